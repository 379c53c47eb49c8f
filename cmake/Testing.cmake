# was_gtest(NAME LABEL SOURCE... [LINK lib...] [INCLUDE dir...] [TIMEOUT seconds])
#
# The one way a GoogleTest binary is registered: built from SOURCE, linked with the test helpers
# (common/testing), GoogleTest's main and LINK, registered with ctest under LABEL:
#   unit  in-process, no server (fakes, pure functions)
#   e2e   real sockets on loopback, no database
#   pg    needs the real PostgreSQL of the fixture "pg" (its URL in WAS_TEST_DATABASE_URL)
#   grpc  a service in process over gRPC, with that PostgreSQL too
# TIMEOUT defaults to 120 s (300 s for grpc).
function(was_gtest name label)
  cmake_parse_arguments(ARG "" "TIMEOUT" "LINK;INCLUDE" ${ARGN})
  add_executable(${name} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name}
    PRIVATE wasentinel_common_testing GTest::gtest_main PkgConfig::PQXX ${ARG_LINK})
  if(ARG_INCLUDE)
    target_include_directories(${name} PRIVATE ${ARG_INCLUDE})
  endif()
  set(timeout 120)
  if(label STREQUAL "grpc")
    set(timeout 300)
  endif()
  if(ARG_TIMEOUT)
    set(timeout ${ARG_TIMEOUT})
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS ${label} TIMEOUT ${timeout})
  if(label STREQUAL "pg" OR label STREQUAL "grpc")
    set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED pg
                         ENVIRONMENT "WAS_TEST_DATABASE_URL=${WAS_TEST_PG_URL}")
  endif()
endfunction()
