# Conan 2 recipe for ankanet, a header-only package.
#   conan create . --build=missing
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
    default_options = {"boost/*:header_only": True, "fmt/*:header_only": True}

    def set_version(self):
        # One source of truth for the version: include/ankanet/version.hpp.
        text = load(self, os.path.join(self.recipe_folder, "include", "ankanet", "version.hpp"))
        parts = [re.search(rf"#define ANKANET_VERSION_{p} (\d+)", text).group(1)
                 for p in ("MAJOR", "MINOR", "PATCH")]
        self.version = ".".join(parts)

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        self.requires("boost/1.81.0", transitive_headers=True)
        self.requires("fmt/9.1.0", transitive_headers=True)

    def package_id(self):
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
