"""Reading and writing: frame sources (files, folders, MOT sequences, cameras, streams), MOTChallenge files,
the tracks JSONL and the annotated video writer, and the one atomic file writer everything uses."""
