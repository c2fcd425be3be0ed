"""Everything between the store and head office: wire protocol, client, and the head-office server."""
