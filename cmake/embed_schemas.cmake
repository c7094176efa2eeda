# Writes OUT, a C file with one NUL-terminated string per schema in NAMES,
# named rs_schema_<name>_json. NAMES is comma-separated. Run with cmake -P.
string(REPLACE "," ";" NAMES "${NAMES}")
set(content "/* Generated from the files in schemas/ by cmake/embed_schemas.cmake. */\n")
foreach(name ${NAMES})
  file(READ ${DIR}/${name}.avsc hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(APPEND content "extern const char rs_schema_${name}_json[];\n")
  string(APPEND content "const char rs_schema_${name}_json[] = {${hex}0x00};\n")
endforeach()
file(WRITE ${OUT} "${content}")
