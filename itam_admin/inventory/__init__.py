"""The tenant's ITAM data (computers, installed applications, contracts), how exports read it, and demo data."""
