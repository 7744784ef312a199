// The package works: a shared network starts on an io_context (Boost.Asio) and the version is
// printed with fmt, both reached through ankanet's own header and the package's requirements.
#include <ankanet/shared.hpp>

int main() {
    boost::asio::io_context io;
    std::string why;
    auto network = ankanet::make_shared_network(io.get_executor(), {}, &why);
    if (!network) {
        fmt::print(stderr, "ankanet: shared network refused: {}\n", why);
        return 1;
    }
    fmt::print("ankanet {}: a shared network on 192.168.64.0/24\n", ankanet::version_string);
    (*network)->stop();
    io.poll();
    return 0;
}
