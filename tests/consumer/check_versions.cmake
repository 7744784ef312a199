# Run by CTest (cmake -P -DANKANET_SOURCE_DIR=...): the version has one source of truth,
# include/ankanet/version.hpp. CMake and conanfile.py read it from there; what cannot read it
# (vcpkg.json, version_string in the header itself) repeats it, and this check fails on the first
# copy that disagrees, naming the file.
if(NOT DEFINED ANKANET_SOURCE_DIR)
  message(FATAL_ERROR "check_versions.cmake needs -DANKANET_SOURCE_DIR=...")
endif()

set(header "${ANKANET_SOURCE_DIR}/include/ankanet/version.hpp")
file(READ "${header}" text)
foreach(part MAJOR MINOR PATCH)
  if(NOT text MATCHES "\n#define ANKANET_VERSION_${part} ([0-9]+)\n")
    message(FATAL_ERROR "${header}: no ANKANET_VERSION_${part}")
  endif()
  set(${part} "${CMAKE_MATCH_1}")
endforeach()
set(version "${MAJOR}.${MINOR}.${PATCH}")

if(NOT text MATCHES "version_string = \"([^\"]*)\"")
  message(FATAL_ERROR "${header}: no version_string")
endif()
if(NOT CMAKE_MATCH_1 STREQUAL version)
  message(FATAL_ERROR "${header}: version_string is ${CMAKE_MATCH_1}, the macros say ${version}")
endif()

set(manifest "${ANKANET_SOURCE_DIR}/ports/ankanet/vcpkg.json")
file(READ "${manifest}" json)
string(JSON port_version ERROR_VARIABLE no_version GET "${json}" "version-semver")
if(no_version)
  message(FATAL_ERROR "${manifest}: no \"version-semver\" (${no_version})")
endif()
if(NOT port_version STREQUAL version)
  message(FATAL_ERROR "${manifest}: version-semver is ${port_version}, version.hpp says ${version}")
endif()

# The Conan recipe must not carry a version of its own: set_version() reads version.hpp.
set(recipe "${ANKANET_SOURCE_DIR}/conanfile.py")
file(READ "${recipe}" conan)
if(conan MATCHES "\n[ \t]+version[ \t]*=" OR NOT conan MATCHES "def set_version\\(self\\)")
  message(FATAL_ERROR "${recipe}: the version must come from set_version() reading version.hpp")
endif()

message(STATUS "version ${version}: version.hpp, version_string, vcpkg.json and conanfile.py agree")
