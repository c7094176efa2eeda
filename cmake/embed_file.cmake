# Writes OUT, a C file defining the NUL-terminated string NAME with the bytes
# of IN and NAME_len with their count. Run with cmake -P.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR n "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
file(WRITE ${OUT} "/* Generated from ${IN} by cmake/embed_file.cmake. */\n#include <stddef.h>\nextern const char ${NAME}[];\nextern const size_t ${NAME}_len;\nconst char ${NAME}[] = {${hex}0x00};\nconst size_t ${NAME}_len = ${n};\n")
