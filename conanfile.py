# Conan 2 recipe for ankanet, a header-only package.
#   conan create . --build=missing
# test_package/ (run by `conan create`) builds a small program against the package.
import os
import re

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy, load
from conan.tools.layout import basic_layout

required_conan_version = ">=2.0"


class AnkanetConan(ConanFile):
    name = "ankanet"
    description = "Header-only C++20 user-mode networking (NAT, DHCP, L2 switch) for virtual machines"
    license = "MIT"
    homepage = "https://github.com/ankanet/ankanet"
    url = "https://github.com/ankanet/ankanet"
    topics = ("networking", "virtualization", "nat", "dhcp", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "include/*", "LICENSE"
    no_copy_source = True
    # No options on the dependencies: whether Boost and fmt are header-only, static or shared is
    # the consumer's choice (ankanet needs Boost's headers only; `-o "boost/*:header_only=True"`
    # spares a consumer building all of Boost).

    def set_version(self):
        # One source of truth for the version: include/ankanet/version.hpp.
        text = load(self, os.path.join(self.recipe_folder, "include", "ankanet", "version.hpp"))
        parts = []
        for part in ("MAJOR", "MINOR", "PATCH"):
            found = re.search(rf"^#define ANKANET_VERSION_{part} (\d+)$", text, re.MULTILINE)
            if not found:
                raise ValueError(f"include/ankanet/version.hpp: no ANKANET_VERSION_{part}")
            parts.append(found.group(1))
        self.version = ".".join(parts)

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        # Ranges, not pins. The lower bounds are what the project builds and tests with (Debian 12:
        # Boost 1.81, fmt 9.1); the upper bounds stop before releases that removed interfaces
        # (Asio in Boost 1.87 dropped long-deprecated ones; fmt breaks API at a major version).
        # The headers include both, so their headers and libraries reach the consumer.
        self.requires("boost/[>=1.81.0 <1.87]", transitive_headers=True, transitive_libs=True)
        self.requires("fmt/[>=9.1.0 <10]", transitive_headers=True, transitive_libs=True)

    def package_id(self):
        # Header-only: one package for every configuration.
        self.info.clear()

    def validate(self):
        check_min_cppstd(self, 20)

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", os.path.join(self.source_folder, "include"),
             os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "ankanet")
        self.cpp_info.set_property("cmake_target_name", "ankanet::ankanet")
        self.cpp_info.set_property("pkg_config_name", "ankanet")
        if self.settings.os in ("Linux", "FreeBSD"):
            self.cpp_info.system_libs = ["pthread"]
        elif self.settings.os == "Macos":
            # backend/vmnet.hpp calls Apple's vmnet.framework.
            self.cpp_info.frameworks = ["vmnet"]
