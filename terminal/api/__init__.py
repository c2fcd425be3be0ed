"""The local HTTP API the POS and the cashier panel use; listens on loopback only."""
