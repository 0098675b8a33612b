# Writes the fixtures JSON as a C byte array: cmake -DIN=<json> -DOUT=<c file> -P <this file>.
file(READ ${IN} PM_HEX HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," PM_BYTES "${PM_HEX}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n    "
       PM_BYTES "${PM_BYTES}")
file(WRITE ${OUT}
     "/* Generated from tools/sandbox/fixtures.json by embed_fixtures.cmake: do not edit. */\n"
     "#include \"sandbox.h\"\n\n"
     "const unsigned char sandbox_builtin_fixtures[] = {\n    ${PM_BYTES}0x00};\n"
     "const size_t sandbox_builtin_fixtures_len = sizeof(sandbox_builtin_fixtures) - 1;\n")
