# Build settings for ankanet's own targets (tests, examples, benchmarks, fuzzers).
#
# Everything here goes through the non-installed INTERFACE target `ankanet_project_options`, which
# the project's own executables link. Nothing reaches `ankanet::ankanet`, so consumers never inherit
# our warnings-as-errors or sanitizer flags.

add_library(ankanet_project_options INTERFACE)

set(ANKANET_WARNING_FLAGS
  -Wall -Wextra -Wpedantic
  -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast
  -Wnon-virtual-dtor -Woverloaded-virtual -Wcast-align
  -Wimplicit-fallthrough -Wformat=2 -Wundef
  -Werror)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  list(APPEND ANKANET_WARNING_FLAGS -Wduplicated-cond -Wlogical-op -Wuseless-cast)
endif()
target_compile_options(ankanet_project_options INTERFACE ${ANKANET_WARNING_FLAGS})

if(ANKANET_SANITIZE)
  set(ANKANET_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_compile_options(ankanet_project_options INTERFACE ${ANKANET_SANITIZER_FLAGS})
  target_link_options(ankanet_project_options INTERFACE ${ANKANET_SANITIZER_FLAGS})
endif()

# ankanet_add_executable(name sources...): an executable of this project, with its options.
function(ankanet_add_executable name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE ankanet::ankanet ankanet_project_options)
endfunction()
