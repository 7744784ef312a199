// An outside program built against ankanet: it must compile with only the package's own usage
// requirements and print what it computed, which the consumer test checks.
#include <ankanet/ankanet.hpp>

#include <fmt/core.h>

int main() {
    const std::error_code ec = ankanet::errc::truncated;
    fmt::print("ankanet {} error={}\n", ankanet::version_string, ec.message());
    return ec == ankanet::errc::truncated ? 0 : 1;
}
