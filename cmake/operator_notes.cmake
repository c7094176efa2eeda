# Appends every operators/<name>/NOTES.md (sorted by operator) to OUT:
# the prose that goes with the generated operator reference (how defaults
# were chosen, measurements). Used by the `docs` target.
file(GLOB notes ${DIR}/*/NOTES.md)
list(SORT notes)
foreach(n ${notes})
  file(READ ${n} content)
  file(APPEND ${OUT} "\n${content}")
endforeach()
