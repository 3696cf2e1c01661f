"""Storage: the Parquet tables and what is already in them.

1. ``hashing``      content hashes of files (recordings, model weights)
2. ``rows``         a night's results as table rows (every input gets a ``calls`` row)
3. ``lock``         one night at a time per output folder
4. ``transaction``  a night's files staged, then published together; what a killed night left, recovered
5. ``parquet``      the only module that reads or writes Parquet
6. ``incremental``  which recordings are already transcribed (whole), and their stored rows
"""
