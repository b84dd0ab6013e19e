"""Files digitnet writes and reads: model files (no pickle), atomic writes, where things are kept."""
