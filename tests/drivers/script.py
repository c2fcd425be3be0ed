"""A scripted card for byte-level driver tests: the exact command APDUs expected, and the answers."""

from __future__ import annotations


def _bytes(frame: bytes | str) -> bytes:
    return bytes.fromhex(frame) if isinstance(frame, str) else frame


class Script:
    """A transmit that expects exactly these command APDUs, in order, and gives these answers.
    Frames are bytes or hex text ("FF CA 00 00 00")."""

    def __init__(self, *frames: tuple[bytes | str, bytes | str]) -> None:
        self.frames = [(_bytes(c), _bytes(r)) for c, r in frames]
        self.sent: list[bytes] = []

    def __call__(self, apdu: bytes) -> bytes:
        assert self.frames, f"unexpected extra APDU {apdu.hex(' ').upper()}"
        expected, response = self.frames.pop(0)
        assert apdu == expected, f"sent {apdu.hex(' ').upper()}, expected {expected.hex(' ').upper()}"
        self.sent.append(apdu)
        return response

    def finished(self) -> bool:
        return not self.frames
