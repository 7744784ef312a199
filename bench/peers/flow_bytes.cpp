// flow_bytes — the memory ankanet's TCP translator reserves per flow (engine state + host-socket
// slot), as nat::tcp_translator::bytes_per_flow() reports it, for a translator of 10 000 flows.
// bench/peers/run.sh prints it next to the throughput table.
#include <ankanet/nat/egress.hpp>
#include <ankanet/nat/tcp.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdio>

int main() {
    boost::asio::io_context io;
    ankanet::nat::tcp_limits limits;
    limits.capacity = 10'000;
    limits.vm_flows = 10'000;
    const ankanet::nat::tcp_translator<ankanet::nat::egress_host_only> translator{
        io.get_executor(), ankanet::nat::translation_config{}, ankanet::nat::egress_host_only{}, limits};
    std::printf("flow_bytes capacity=%zu bytes_per_flow=%.0f\n", limits.capacity, translator.bytes_per_flow());
    return 0;
}
