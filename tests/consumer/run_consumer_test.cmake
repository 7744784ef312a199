# Run by CTest (cmake -P). Installs the ankanet build into a scratch prefix, then builds and runs
# the consumer project against it with find_package, from the source tree with add_subdirectory,
# and by hand with pkg-config. Any failure stops the script with FATAL_ERROR.
foreach(var ANKANET_SOURCE_DIR ANKANET_BINARY_DIR WORK_DIR CONSUMER_DIR CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer_test.cmake needs -D${var}=...")
  endif()
endforeach()

include("${CMAKE_CURRENT_LIST_DIR}/../support/run_command.cmake")

# Each consumer program prints "ankanet <version> lease=<address>": the address its VM got by DHCP
# through a memory link, in the subnet of its mode.
function(expect_consumer_output binary subnet_regex)
  run("${binary}")
  if(NOT last_output MATCHES "^ankanet [0-9]+\\.[0-9]+\\.[0-9]+ lease=${subnet_regex}[0-9]+\n$")
    message(FATAL_ERROR "unexpected consumer output from ${binary}: ${last_output}")
  endif()
  message(STATUS "${binary}: ${last_output}")
endfunction()
set(shared_lease "192\\.168\\.64\\.")
set(host_lease "192\\.168\\.128\\.")

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
run(${CMAKE_COMMAND} --install "${ANKANET_BINARY_DIR}" --prefix "${prefix}")
foreach(expected include/ankanet/ankanet.hpp include/ankanet/shared.hpp include/ankanet/host.hpp
                 include/ankanet/dhcp/client_frames.hpp share/cmake/ankanet/ankanetConfig.cmake
                 share/cmake/ankanet/ankanetConfigVersion.cmake share/pkgconfig/ankanet.pc)
  if(NOT EXISTS "${prefix}/${expected}")
    message(FATAL_ERROR "install did not lay out ${expected}")
  endif()
endforeach()

# 1. find_package(ankanet CONFIG REQUIRED) against the installed prefix only.
run(${CMAKE_COMMAND} -S "${CONSUMER_DIR}" -B "${WORK_DIR}/find_package" -G "${GENERATOR}"
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DANKANET_CONSUME=find_package
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/find_package")
expect_consumer_output("${WORK_DIR}/find_package/consumer" "${shared_lease}")
expect_consumer_output("${WORK_DIR}/find_package/consumer_host" "${host_lease}")

# 2. add_subdirectory of the source tree.
run(${CMAKE_COMMAND} -S "${CONSUMER_DIR}" -B "${WORK_DIR}/subdirectory" -G "${GENERATOR}"
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DANKANET_CONSUME=subdirectory
    -DANKANET_SOURCE_DIR=${ANKANET_SOURCE_DIR})
run(${CMAKE_COMMAND} --build "${WORK_DIR}/subdirectory")
expect_consumer_output("${WORK_DIR}/subdirectory/consumer" "${shared_lease}")
expect_consumer_output("${WORK_DIR}/subdirectory/consumer_host" "${host_lease}")

# 3. pkg-config, as a Makefile-based hypervisor would use it.
find_program(PKG_CONFIG pkg-config REQUIRED)
set(ENV{PKG_CONFIG_PATH} "${prefix}/share/pkgconfig")
run(${PKG_CONFIG} --cflags --libs ankanet)
string(STRIP "${last_output}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${CXX_COMPILER} "${CONSUMER_DIR}/main.cpp" -o "${WORK_DIR}/consumer-pkgconfig" ${flags})
expect_consumer_output("${WORK_DIR}/consumer-pkgconfig" "${shared_lease}")
run(${CXX_COMPILER} -DANKANET_CONSUMER_HOST "${CONSUMER_DIR}/main.cpp" -o "${WORK_DIR}/consumer_host-pkgconfig" ${flags})
expect_consumer_output("${WORK_DIR}/consumer_host-pkgconfig" "${host_lease}")
