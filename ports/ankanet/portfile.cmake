# vcpkg port for ankanet (header-only). Use as an overlay port:
#   vcpkg install ankanet --overlay-ports=<ankanet>/ports
# SHA512 is that of the tagged release archive; vcpkg prints the right value if it is wrong.
vcpkg_from_github(
    OUT_SOURCE_PATH SOURCE_PATH
    REPO ankanet/ankanet
    REF "v${VERSION}"
    SHA512 0
    HEAD_REF main
)

set(VCPKG_BUILD_TYPE release) # header-only: one configuration is enough

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DANKANET_BUILD_TESTS=OFF
        -DANKANET_BUILD_EXAMPLES=OFF
        -DANKANET_BUILD_BENCH=OFF
        -DANKANET_BUILD_FUZZ=OFF
        -DANKANET_INSTALL=ON
        -DANKANET_CMAKE_DIR=share/ankanet
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME ankanet CONFIG_PATH share/ankanet)
vcpkg_fixup_pkgconfig()

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/lib" "${CURRENT_PACKAGES_DIR}/debug")
file(REMOVE "${CURRENT_PACKAGES_DIR}/share/doc/ankanet/LICENSE")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
