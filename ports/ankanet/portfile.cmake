# vcpkg overlay port for ankanet (header-only), building the checkout it lives in:
#   vcpkg install ankanet --overlay-ports=<checkout>/ports
# or, in a manifest project, "vcpkg-configuration.json": { "overlay-ports": ["<checkout>/ports"] }.
#
# The source is this repository itself (two folders up), so there is nothing to download and no
# archive hash to pin. vcpkg's cache key does not cover files outside the port folder: after
# changing the checkout, `vcpkg remove ankanet` (or bump "port-version") before installing again.
# A port in a registry would instead fetch a release, replacing the set() below with
#   vcpkg_from_github(OUT_SOURCE_PATH SOURCE_PATH REPO ankanet/ankanet REF "v${VERSION}"
#                     SHA512 <the release archive's> HEAD_REF main)
# once such a tag exists, and would live in the registry's ports/ folder with its versions/ entry.
cmake_path(SET SOURCE_PATH NORMALIZE "${CMAKE_CURRENT_LIST_DIR}/../..")
if(NOT EXISTS "${SOURCE_PATH}/include/ankanet/version.hpp")
  message(FATAL_ERROR "this overlay port builds the ankanet checkout it is in; ${SOURCE_PATH} is not one")
endif()

set(VCPKG_BUILD_TYPE release) # header-only: one configuration is enough

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DANKANET_BUILD_TESTS=OFF
        -DANKANET_BUILD_EXAMPLES=OFF
        -DANKANET_BUILD_BENCH=OFF
        -DANKANET_BUILD_FUZZ=OFF
        -DANKANET_BUILD_DOCS=OFF
        -DANKANET_INSTALL=ON
        -DANKANET_CMAKE_DIR=share/${PORT}
)
vcpkg_cmake_install()
# The config is already in share/ankanet, where vcpkg wants it; this fixes its paths.
vcpkg_cmake_config_fixup()
# ankanet.pc lands in share/pkgconfig (no Libs: line) or, where link flags are needed (macOS's
# -framework vmnet), in lib/pkgconfig; both are made relative to the prefix here.
vcpkg_fixup_pkgconfig()

# The CMake install puts LICENSE in share/doc/ankanet; vcpkg wants it as share/ankanet/copyright
# and rejects the folder left behind, so the whole share/doc goes.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/share/doc")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
