"""Store: the run directory (every file name), the one loader, the earlier toolkit's layouts."""
