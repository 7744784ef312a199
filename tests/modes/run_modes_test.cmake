# Run by CTest (cmake -P): checks about what the mode headers compile into a program, with the
# project's compiler and flags. CHECK selects one:
#
#   usage   — compile only what you use. Builds host_only.cpp (only <ankanet/host.hpp>) and
#             disconnected_only.cpp (only <ankanet/disconnected.hpp>), runs both, then:
#             * nm -C: the disconnected binary holds no symbol of ankanet::dhcp::, ankanet::gateway::
#               (the ARP guard, the responder, the neighbour table) or ankanet::wire::dhcp::, but
#               does hold ankanet::basic_network (so nm sees template code at all); the host binary
#               DOES hold ankanet::dhcp::, ankanet::gateway::arp_guard and ankanet::gateway::responder
#               (the positive control: without it an empty nm output would pass), and the UDP
#               translator with the host-only policy — but no ICMP translator and no policy that
#               reaches beyond the host (egress_any, allow-lists, runtime_egress);
#             * g++ -M: disconnected.hpp pulls in no ankanet/dhcp/ or ankanet/gateway/ header, while
#               host.hpp does pull in ankanet/dhcp/ (the same control).
#             Built at -O0 -fno-inline: g++ then emits every template it instantiates out of line
#             (as a weak symbol), so what the program uses shows in nm whatever the build type of
#             the project; at -O2 a service could be inlined away and the check pass by accident.
#             * bridge_only.cpp (only <ankanet/bridge.hpp>) holds no symbol of ankanet::dhcp::,
#               ankanet::nat::, ankanet::dns:: or ankanet::gateway:: (the LAN serves bridged VMs), and
#               does hold the uplink decorator and the MAC translator.
#   concept — not_a_service.cpp must fail to compile, naming `gateway_service`; with
#             -DANKANET_MODES_CONTROL (a real service) it must compile.
#
# FLAGS holds the compiler flags (include directories, definitions, warnings) separated by '|'.
foreach(var CHECK CXX_COMPILER SOURCE_DIR WORK_DIR FLAGS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_modes_test.cmake needs -D${var}=...")
  endif()
endforeach()
string(REPLACE "|" ";" flags "${FLAGS}")
set(cxx ${CXX_COMPILER} -std=c++20 ${flags})

file(MAKE_DIRECTORY "${WORK_DIR}")

include("${CMAKE_CURRENT_LIST_DIR}/../support/run_command.cmake")

# Fails unless compiling `source` fails and the diagnostics match `pattern`; prints the lines around
# the first match (what the docs quote). Then compiles it with -DANKANET_MODES_CONTROL, which must work.
function(expect_compile_error source pattern)
  execute_process(COMMAND ${cxx} -fsyntax-only "${SOURCE_DIR}/${source}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "${source} compiled, but must not")
  endif()
  string(REGEX MATCH "[^\n]*${pattern}[^\n]*" hit "${err}")
  if(NOT hit)
    message(FATAL_ERROR "${source} failed to compile, but the diagnostics do not match '${pattern}':\n${err}")
  endif()
  # The lines that say what is wrong, without the long template backtraces. A ';' in a message
  # would split the list of lines: it is kept aside as <semicolon> and put back for printing.
  string(REPLACE ";" "<semicolon>" err "${err}")
  string(REGEX MATCHALL "[^\n]*(error|note):[^\n]*" said "${err}")
  set(excerpt "")
  foreach(line IN LISTS said)
    if(line MATCHES "error:|gateway_service|checked_service|evaluates to|evaluated to")
      string(REGEX REPLACE "^[^ ]*/" "" line "${line}") # the file name without its directory
      string(REPLACE "<semicolon>" ";" line "${line}")
      string(APPEND excerpt "  ${line}\n")
    endif()
  endforeach()
  message(STATUS "${source}: refused as expected; the diagnostics say:\n${excerpt}")
  run(${cxx} -fsyntax-only -DANKANET_MODES_CONTROL "${SOURCE_DIR}/${source}")
  message(STATUS "${source} with -DANKANET_MODES_CONTROL: compiles")
endfunction()

if(CHECK STREQUAL "concept")
  expect_compile_error(not_a_service.cpp "checked_service<not_a_service>")
  return()
elseif(NOT CHECK STREQUAL "usage")
  message(FATAL_ERROR "CHECK must be usage or concept")
endif()

find_program(NM NAMES nm REQUIRED)

# Symbols that must not be in / must be in a binary, as regular expressions over `nm -C` lines.
set(disconnected_forbidden "ankanet::dhcp::" "ankanet::gateway::" "ankanet::wire::dhcp::")
set(disconnected_required "ankanet::basic_network<")
set(host_required "ankanet::dhcp::" "ankanet::gateway::arp_guard" "ankanet::gateway::responder"
    "ankanet::nat::udp_translator<ankanet::nat::egress_host_only>")
# Host mode carries flows to the host only: no ICMP translator, no policy that reaches further.
set(host_forbidden "ankanet::nat::icmp_translator" "ankanet::nat::egress_any::allows" "ankanet::nat::runtime_egress::allows"
    "ankanet::nat::egress_allow_list::allows" "udp_translator<ankanet::nat::runtime_egress>")

set(bridge_forbidden "ankanet::dhcp::" "ankanet::nat::" "ankanet::dns::" "ankanet::gateway::")
set(bridge_required "ankanet::bridge::lan_uplink<" "ankanet::l2::basic_mac_translator<")

foreach(program host_only disconnected_only bridge_only)
  run(${cxx} -O0 -g -fno-inline "${SOURCE_DIR}/${program}.cpp" -o "${WORK_DIR}/${program}" -pthread)
  run("${WORK_DIR}/${program}")
  run(${NM} -C "${WORK_DIR}/${program}")
  string(REPLACE ";" "," symbols "${last_output}") # nm lines hold ';' in no name we match, but lists would split
  set(${program}_symbols "${symbols}")
  run(${cxx} -M "${SOURCE_DIR}/${program}.cpp")
  set(${program}_deps "${last_output}")
endforeach()

foreach(pattern IN LISTS disconnected_forbidden)
  string(REGEX MATCHALL "[^\n]*${pattern}[^\n]*" found "${disconnected_only_symbols}")
  if(found)
    list(LENGTH found count)
    list(GET found 0 first)
    message(FATAL_ERROR "the disconnected program holds ${count} symbol(s) matching '${pattern}', e.g.:\n  ${first}")
  endif()
endforeach()
foreach(pattern IN LISTS disconnected_required)
  if(NOT disconnected_only_symbols MATCHES "${pattern}")
    message(FATAL_ERROR "the disconnected program holds no symbol matching '${pattern}': nm sees nothing, the check proves nothing")
  endif()
endforeach()
foreach(pattern IN LISTS bridge_forbidden)
  string(REGEX MATCHALL "[^\n]*${pattern}[^\n]*" found "${bridge_only_symbols}")
  if(found)
    list(GET found 0 first)
    message(FATAL_ERROR "the bridge program holds code of a gateway of its own, matching '${pattern}', e.g.:\n  ${first}")
  endif()
endforeach()
foreach(pattern IN LISTS bridge_required)
  if(NOT bridge_only_symbols MATCHES "${pattern}")
    message(FATAL_ERROR "positive control: the bridge program holds no symbol matching '${pattern}'")
  endif()
endforeach()
foreach(pattern IN LISTS host_forbidden)
  string(REGEX MATCHALL "[^\n]*${pattern}[^\n]*" found "${host_only_symbols}")
  if(found)
    list(GET found 0 first)
    message(FATAL_ERROR "the host program holds code that carries flows beyond the host, matching '${pattern}', e.g.:\n  ${first}")
  endif()
endforeach()
foreach(pattern IN LISTS host_required)
  string(REGEX MATCHALL "[^\n]*${pattern}[^\n]*" found "${host_only_symbols}")
  if(NOT found)
    message(FATAL_ERROR "positive control: the host program holds no symbol matching '${pattern}'")
  endif()
  list(LENGTH found count)
  message(STATUS "host program: ${count} symbol(s) matching '${pattern}'")
endforeach()

if(disconnected_only_deps MATCHES "ankanet/(dhcp|gateway)/[a-z_]+\\.hpp")
  message(FATAL_ERROR "disconnected.hpp pulls in ${CMAKE_MATCH_0}")
endif()
if(NOT host_only_deps MATCHES "ankanet/dhcp/[a-z_]+\\.hpp")
  message(FATAL_ERROR "positive control: host.hpp pulls in no ankanet/dhcp/ header according to g++ -M")
endif()
message(STATUS "the disconnected program holds no DHCP or gateway code, and includes no such header")
