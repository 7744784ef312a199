# Run by CTest (cmake -P). Installs the ankanet build into a scratch prefix, moves the prefix (the
# package must be relocatable), then builds an outside project against it with find_package, from
# the source tree with add_subdirectory, and by hand with pkg-config. Each way builds and runs
# main.cpp (a program whose one include is <ankanet/shared.hpp>: its VM gets a DHCP lease). The
# README's quick-start code, extracted here from README.md so the two cannot drift, is compiled and
# linked the way the README shows (find_package), not run: it opens a TAP in a namespace. Four
# compiles in all, each of ankanet's heaviest headers: a few seconds each on an idle machine.
# Any failure stops the script with FATAL_ERROR.
foreach(var ANKANET_SOURCE_DIR ANKANET_BINARY_DIR WORK_DIR CONSUMER_DIR CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer_test.cmake needs -D${var}=...")
  endif()
endforeach()

include("${CMAKE_CURRENT_LIST_DIR}/../support/run_command.cmake")

# The consumer prints "ankanet <version> lease=<address>": the address its VM got by DHCP through
# a memory link, in the shared network's subnet.
function(expect_consumer_output binary)
  run("${binary}")
  if(NOT last_output MATCHES "^ankanet [0-9]+\\.[0-9]+\\.[0-9]+ lease=192\\.168\\.64\\.[0-9]+\n$")
    message(FATAL_ERROR "unexpected consumer output from ${binary}: ${last_output}")
  endif()
  message(STATUS "${binary}: ${last_output}")
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# main.cpp includes <ankanet/shared.hpp> and nothing else (the header must bring Asio, fmt and the
# standard types its user touches).
file(STRINGS "${CONSUMER_DIR}/main.cpp" includes REGEX "^[ \t]*#[ \t]*include")
if(NOT includes STREQUAL "#include <ankanet/shared.hpp>")
  message(FATAL_ERROR "main.cpp must include <ankanet/shared.hpp> only, it has: ${includes}")
endif()

# The first ```cpp block under README.md's "## Quick start", before the next level-2 heading.
file(READ "${ANKANET_SOURCE_DIR}/README.md" readme)
string(FIND "${readme}" "\n## Quick start\n" at)
if(at EQUAL -1)
  message(FATAL_ERROR "README.md has no \"## Quick start\" heading")
endif()
string(SUBSTRING "${readme}" ${at} -1 section)
string(SUBSTRING "${section}" 1 -1 after_heading)
string(FIND "${after_heading}" "\n## " end)
if(NOT end EQUAL -1)
  string(SUBSTRING "${after_heading}" 0 ${end} section)
endif()
string(FIND "${section}" "\n```cpp\n" open)
if(open EQUAL -1)
  message(FATAL_ERROR "README.md's \"## Quick start\" has no ```cpp block")
endif()
math(EXPR open "${open} + 8")
string(SUBSTRING "${section}" ${open} -1 code)
string(FIND "${code}" "\n```" close)
if(close EQUAL -1)
  message(FATAL_ERROR "README.md's quick-start ```cpp block is not closed")
endif()
math(EXPR close "${close} + 1")
string(SUBSTRING "${code}" 0 ${close} code)
if(NOT code MATCHES "int main\\(")
  message(FATAL_ERROR "README.md's quick-start block has no main(): ${code}")
endif()
set(quick_start "${WORK_DIR}/quick_start.cpp")
file(WRITE "${quick_start}" "${code}")

# Install the library (not the programs) into a staging prefix, then move it: nothing may remember
# where it was installed.
set(staging "${WORK_DIR}/staging")
set(prefix "${WORK_DIR}/prefix")
run(${CMAKE_COMMAND} --install "${ANKANET_BINARY_DIR}" --prefix "${staging}" --component development)
file(RENAME "${staging}" "${prefix}")
foreach(expected include/ankanet/ankanet.hpp include/ankanet/shared.hpp include/ankanet/host.hpp
                 include/ankanet/dhcp/client_frames.hpp share/cmake/ankanet/ankanetConfig.cmake
                 share/cmake/ankanet/ankanetConfigVersion.cmake)
  if(NOT EXISTS "${prefix}/${expected}")
    message(FATAL_ERROR "install did not lay out ${expected}")
  endif()
endforeach()
file(GLOB_RECURSE pc_files "${prefix}/*/ankanet.pc")
list(LENGTH pc_files pc_count)
if(NOT pc_count EQUAL 1)
  message(FATAL_ERROR "expected one installed ankanet.pc, found: ${pc_files}")
endif()
# share/pkgconfig holds architecture-independent files only: vcpkg rejects a `Libs:` line there.
file(STRINGS "${pc_files}" pc_libs REGEX "^Libs")
if(pc_files MATCHES "/share/pkgconfig/" AND pc_libs)
  message(FATAL_ERROR "${pc_files} is in share/pkgconfig but has link flags: ${pc_libs}")
endif()

# 1. find_package(ankanet CONFIG REQUIRED) against the installed prefix only.
run(${CMAKE_COMMAND} -S "${CONSUMER_DIR}" -B "${WORK_DIR}/find_package" -G "${GENERATOR}"
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DANKANET_CONSUME=find_package -DQUICK_START_SOURCE=${quick_start}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/find_package")
expect_consumer_output("${WORK_DIR}/find_package/consumer")

# 2. add_subdirectory of the source tree.
run(${CMAKE_COMMAND} -S "${CONSUMER_DIR}" -B "${WORK_DIR}/subdirectory" -G "${GENERATOR}"
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DANKANET_CONSUME=subdirectory -DANKANET_SOURCE_DIR=${ANKANET_SOURCE_DIR})
run(${CMAKE_COMMAND} --build "${WORK_DIR}/subdirectory")
expect_consumer_output("${WORK_DIR}/subdirectory/consumer")

# 3. pkg-config, as a Makefile-based hypervisor would use it. The flags must carry no standard and
# no macro (those are the consumer's choice); the consumer names its standard, nothing else.
find_program(PKG_CONFIG pkg-config REQUIRED)
get_filename_component(pc_dir "${pc_files}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
run(${PKG_CONFIG} --cflags --libs ankanet)
string(STRIP "${last_output}" flags)
message(STATUS "pkg-config --cflags --libs ankanet: ${flags}")
separate_arguments(flags UNIX_COMMAND "${flags}")
foreach(flag IN LISTS flags)
  if(flag MATCHES "^-std=|^-D")
    message(FATAL_ERROR "pkg-config forces ${flag} on consumers")
  endif()
endforeach()
run(${CXX_COMPILER} -std=c++20 "${CONSUMER_DIR}/main.cpp" -o "${WORK_DIR}/consumer-pkgconfig" ${flags})
expect_consumer_output("${WORK_DIR}/consumer-pkgconfig")
