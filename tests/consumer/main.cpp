// An outside program built against ankanet: it must compile with only the package's own usage
// requirements and print what it computed, which the consumer test checks.
//
// A hypervisor in miniature: a shared network, one VM on a memory link, and the VM's DHCP exchange
// (a real DISCOVER, then a REQUEST for what was offered) until the ACK says which address it has.
// Its only include is <ankanet/shared.hpp>, which must bring everything used here: the memory
// backend, a DHCP client's frames for an in-process guest, the version string, Asio's io_context
// and fmt. The consumer test checks that this is the file's one include.
#include <ankanet/shared.hpp>

namespace {

using ankanet::wire::dhcp::message_type;

/// The VM sends `frame`; the network runs; the first DHCP reply of type `want` that reaches the VM.
std::optional<ankanet::dhcp::server_reply> exchange(boost::asio::io_context& io, ankanet::backend::memory_endpoint& vm,
                                                    ankanet::wire::const_bytes frame, message_type want) {
    if (vm.send(frame)) return std::nullopt;
    io.poll();
    io.restart();
    std::array<std::byte, ankanet::backend::max_frame_len(ankanet::backend::default_mtu)> buffer{};
    for (auto n = vm.try_receive(buffer); n; n = vm.try_receive(buffer)) {
        const auto reply = ankanet::dhcp::parse_server_reply(ankanet::wire::const_bytes{buffer}.first(*n));
        if (reply && reply->type == want) return *reply;
    }
    return std::nullopt;
}

} // namespace

int main() {
    boost::asio::io_context io;
    auto net = ankanet::make_shared_network(io.get_executor(), {});
    if (!net) return 1;
    auto [network_end, vm] = ankanet::backend::make_memory_link(io.get_executor());
    const ankanet::wire::mac_address mac{{0x52, 0x54, 0x00, 0xc0, 0xff, 0xee}};
    if (!(*net)->attach("vm1", std::move(network_end), ankanet::port_mac::custom(mac))) return 2;

    const auto offer = exchange(io, vm, ankanet::dhcp::discover_frame(mac, 0xc0ffee).bytes(), message_type::offer);
    if (!offer) return 3;
    const auto ack = exchange(io, vm, ankanet::dhcp::request_frame(mac, *offer).bytes(), message_type::ack);
    if (!ack) return 4;
    fmt::print("ankanet {} lease={}\n", ankanet::version_string, ack->yiaddr);
    (*net)->stop();
    io.poll();
    return 0;
}
