# was_gtest(NAME LABEL SOURCE): a GoogleTest binary registered with ctest under LABEL (unit, pg,
# grpc, ...). Every label but "unit" needs the real PostgreSQL of the fixture "pg", whose URL
# it gets as WAS_TEST_DATABASE_URL. Callers link what the test needs.
function(was_gtest name label source)
  add_executable(${name} ${source})
  target_link_libraries(${name}
    PRIVATE wasentinel_common_testing GTest::gtest_main PkgConfig::PQXX)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS ${label} TIMEOUT 120)
  if(NOT label STREQUAL "unit")
    set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED pg
                         ENVIRONMENT "WAS_TEST_DATABASE_URL=${WAS_TEST_PG_URL}")
  endif()
endfunction()
