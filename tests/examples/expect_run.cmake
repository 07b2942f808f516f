# Runs PROGRAM with ARGS ('|'-separated), then checks its exit status equals
# EXPECT_RC and that its output (stdout and stderr) matches EXPECT_REGEX. A run
# that fails must print nothing on stdout (its message goes to stderr). With
# EXPECT_ABSENT, that file must not exist afterwards (it is removed first). With
# INPUT_FILE, the program reads that file as its stdin.
string(REPLACE "|" ";" arg_list "${ARGS}")
if(EXPECT_ABSENT)
  file(REMOVE "${EXPECT_ABSENT}")
endif()
set(input)
if(INPUT_FILE)
  set(input INPUT_FILE ${INPUT_FILE})
endif()
execute_process(COMMAND ${PROGRAM} ${arg_list} ${input} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT "${rc}" STREQUAL "${EXPECT_RC}")
  message(FATAL_ERROR "exit status ${rc}, expected ${EXPECT_RC}\nstdout: ${out}\nstderr: ${err}")
endif()
if(NOT "${EXPECT_RC}" STREQUAL "0" AND NOT "${out}" STREQUAL "")
  message(FATAL_ERROR "exit status ${rc} but stdout is not empty\nstdout: ${out}\nstderr: ${err}")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT_REGEX}")
  message(FATAL_ERROR "output does not match '${EXPECT_REGEX}'\nstdout: ${out}\nstderr: ${err}")
endif()
if(EXPECT_ABSENT AND EXISTS "${EXPECT_ABSENT}")
  message(FATAL_ERROR "${EXPECT_ABSENT} exists after the run")
endif()
