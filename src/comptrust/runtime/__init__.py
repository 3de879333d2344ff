"""Process tuning applied before a command runs: torch's thread count (threads) and glibc's malloc
thresholds (allocator), with what each chose recorded in every run."""
