# Configures the project as a user would (no tests) and, installing nothing, configures,
# builds and runs the consumer against its build tree: -Dkvdecode_DIR=<build dir>.
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}\n${out}")
  endif()
endfunction()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -DKVDECODE_BUILD_TESTS=OFF
    -DKVDECODE_BUILD_BENCHMARKS=OFF -DKVDECODE_BUILD_EXAMPLES=OFF)
run(${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${WORK_DIR}/consumer -Dkvdecode_DIR=${WORK_DIR}/build
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_BUILD_TYPE=Release)
# The package found must be the build tree's, not one installed elsewhere.
file(STRINGS ${WORK_DIR}/consumer/CMakeCache.txt found REGEX "^kvdecode_DIR:[A-Z]*=")
string(REGEX REPLACE "^kvdecode_DIR:[A-Z]*=" "" found "${found}")
if(NOT found STREQUAL "${WORK_DIR}/build")
  message(FATAL_ERROR "the consumer found kvdecode in '${found}', not the build tree ${WORK_DIR}/build")
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run(${WORK_DIR}/consumer/consumer)
run(${WORK_DIR}/consumer/consumer_version)
run(${WORK_DIR}/consumer/consumer_hf)
message(STATUS "consumer built against the build tree's kvdecode package and ran")
