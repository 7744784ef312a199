// ankanet-demo: the smallest real use of the library.
#include <ankanet/ankanet.hpp>

#include <fmt/core.h>

int main() {
    fmt::print("ankanet {}\n", ankanet::version_string);
    return 0;
}
