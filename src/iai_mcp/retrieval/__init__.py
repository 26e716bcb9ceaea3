"""Ranking as pure functions over arrays: tokenising, the keyword index,
dense/keyword fusion. Nothing here imports the store or does I/O."""
