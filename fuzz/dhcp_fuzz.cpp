// Fuzz target for ankanet::wire::dhcp: parse -> emit -> parse must give the same repr, a second
// emit must give the same bytes, and the view's accessors must agree with the repr. Reading a
// message that does not check must never read out of bounds (ASan watches).
#include <ankanet/wire/dhcp.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace {

namespace dhcp = ankanet::wire::dhcp;
using ankanet::wire::const_bytes;

void require(bool condition) {
    if (!condition) __builtin_trap();
}

/// Touches everything a view offers, whatever check_len() said about it.
void walk(const dhcp::packet<const_bytes>& message) {
    std::size_t sum = 0;
    for (const auto& o : message.options()) sum += o.code + o.data.size();
    (void)message.check_options();
    (void)message.message_type();
    (void)message.client_id();
    (void)message.host_name();
    (void)message.parameter_request_list();
    (void)message.max_message_size();
    (void)message.overload();
    if (!message.check_len()) {
        sum += message.hardware_address().size() + message.sname().size() + message.file().size();
        require(message.hardware_address().size() <= dhcp::chaddr_len);
    }
    volatile std::size_t sink = sum;
    (void)sink;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const const_bytes input{reinterpret_cast<const std::byte*>(data), size};
    const dhcp::packet<const_bytes> message{input};
    walk(message);

    const auto first = dhcp::repr::parse(message);
    if (!first) return 0;

    // The view and the repr read the same options.
    require(message.message_type().value() == first->message_type);
    require(message.requested_ip().value() == first->requested_ip);
    require(message.server_id().value() == first->server_id);
    require(message.lease_time().value() == first->lease_time);
    require(message.max_message_size().value() == first->max_message_size);
    require(message.host_name().value().value_or(std::string_view{}) == first->host_name);

    std::vector<std::byte> out(first->buffer_len());
    require(!first->emit(out));
    require(out.size() >= dhcp::bootp_min_len);
    require(dhcp::packet<const_bytes>::checked(out).has_value());

    const auto second = dhcp::repr::parse(out);
    require(second.has_value());
    require(*second == *first);

    std::vector<std::byte> again(second->buffer_len());
    require(!second->emit(again));
    require(again == out);

    // A buffer one byte short is refused, not overrun.
    std::vector<std::byte> short_buffer(out.size() - 1);
    require(first->emit(short_buffer) == ankanet::errc::buffer_too_small);
    return 0;
}
