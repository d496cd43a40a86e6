"""Ray actors: thin shells over herald/ domain objects. Ray options live in actors.factory only."""
