"""Storage: the Parquet tables and what is already in them.

1. ``hashing``      content hashes of files (recordings, model weights)
2. ``rows``         a night's results as table rows
3. ``parquet``      the only module that reads or writes Parquet
4. ``incremental``  which recordings are already transcribed, and their stored rows
"""
