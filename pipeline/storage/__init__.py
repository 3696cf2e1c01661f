"""Storage: the Parquet tables (the only module that reads or writes them is ``parquet``), the rows a
night's results become (``rows``), content hashes (``hashing``) and what is already stored
(``incremental``)."""
