"""Erasure of one address (the right to erasure, GDPR art. 17): `mta erase` and `POST /v1/erasure`."""
