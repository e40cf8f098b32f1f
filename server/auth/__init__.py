"""Authentication: password hashes, signed tokens, and the principal a request acts as."""
