#include <ankanet/wire/tcp.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <random>
#include <string_view>
#include <vector>

using namespace ankanet;
using namespace ankanet::wire;
using tcp::flag;

namespace {

// Golden segments, cut out of IPv4 packets captured with tcpdump on a veth pair between two
// network namespaces made for the purpose, with TX checksum offload off so the checksums on the
// wire are the final ones. Every segment below was written by the Linux TCP stack (kernel 6.18).
//
// Connection 1: Python sockets, 192.0.2.1:40080 -> 192.0.2.2:8080. The client sent
// "hello ankanet\n", the server answered and closed.
//
// Connection 2: a Linux listener at 192.0.2.2:8082 and a hand-made peer at 192.0.2.9:40082 (a raw
// AF_PACKET socket) that sent 100-byte chunks with holes, so that Linux answered with SACK blocks.
// Run once with timestamps on (3 blocks fit beside them) and once with net.ipv4.tcp_timestamps=0
// (4 blocks fit). Only the segments Linux sent are used.
constexpr ipv4_address host1{192, 0, 2, 1};
constexpr ipv4_address host2{192, 0, 2, 2};
constexpr ipv4_address host9{192, 0, 2, 9};

// Connection 1, client SYN: MSS 1460, SACK-permitted, TS 232008614/0, NOP, window scale 10.
// syn: 192.0.2.1 -> 192.0.2.2, 40 bytes
constexpr auto syn = make_bytes(
    0x9c, 0x90, 0x1f, 0x90, 0xdd, 0xaf, 0x25, 0x13, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0,
    0xd0, 0xaa, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x0d, 0xd4, 0x2b, 0xa6,
    0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a);

// Connection 1, server SYN-ACK: the same option layout.
// syn_ack: 192.0.2.2 -> 192.0.2.1, 40 bytes
constexpr auto syn_ack = make_bytes(
    0x1f, 0x90, 0x9c, 0x90, 0x3d, 0xad, 0x3c, 0xc2, 0xdd, 0xaf, 0x25, 0x14, 0xa0, 0x12, 0xfe, 0x88,
    0xb7, 0x60, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x5e, 0x31, 0x3d, 0x00,
    0x0d, 0xd4, 0x2b, 0xa6, 0x01, 0x03, 0x03, 0x0a);

// Connection 1, client PSH|ACK carrying "hello ankanet\n": NOP NOP timestamps.
// data: 192.0.2.1 -> 192.0.2.2, 46 bytes
constexpr auto data = make_bytes(
    0x9c, 0x90, 0x1f, 0x90, 0xdd, 0xaf, 0x25, 0x14, 0x3d, 0xad, 0x3c, 0xc3, 0x80, 0x18, 0x00, 0x3f,
    0xf1, 0x31, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x0d, 0xd4, 0x2b, 0xa6, 0x5e, 0x31, 0x3d, 0x00,
    0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x61, 0x6e, 0x6b, 0x61, 0x6e, 0x65, 0x74, 0x0a);

// Connection 1, server FIN|ACK.
// fin_ack: 192.0.2.2 -> 192.0.2.1, 32 bytes
constexpr auto fin_ack = make_bytes(
    0x1f, 0x90, 0x9c, 0x90, 0x3d, 0xad, 0x3c, 0xd3, 0xdd, 0xaf, 0x25, 0x22, 0x80, 0x11, 0x00, 0x40,
    0xe4, 0x58, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x5e, 0x31, 0x3d, 0x01, 0x0d, 0xd4, 0x2b, 0xa6);

// Connection 2 (timestamps on), Linux ACK with NOP NOP TS NOP NOP SACK, 3 blocks: 40 option bytes.
// sack3_ts: 192.0.2.2 -> 192.0.2.9, 60 bytes
constexpr auto sack3_ts = make_bytes(
    0x1f, 0x92, 0x9c, 0x92, 0x70, 0xfe, 0xf5, 0x38, 0x10, 0x00, 0x00, 0x01, 0xf0, 0x10, 0x00, 0x40,
    0x13, 0xcc, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x37, 0xc0, 0x92, 0x2e, 0x00, 0x00, 0x03, 0xe8,
    0x01, 0x01, 0x05, 0x1a, 0x10, 0x00, 0x01, 0xf5, 0x10, 0x00, 0x02, 0x59, 0x10, 0x00, 0x01, 0x2d,
    0x10, 0x00, 0x01, 0x91, 0x10, 0x00, 0x00, 0x65, 0x10, 0x00, 0x00, 0xc9);

// Connection 2 (timestamps off), Linux ACK with NOP NOP SACK, 4 blocks.
// sack4: 192.0.2.2 -> 192.0.2.9, 56 bytes
constexpr auto sack4 = make_bytes(
    0x1f, 0x92, 0x9c, 0x92, 0x75, 0x3f, 0xd9, 0xda, 0x10, 0x00, 0x00, 0x01, 0xe0, 0x10, 0x00, 0x3f,
    0xeb, 0xe9, 0x00, 0x00, 0x01, 0x01, 0x05, 0x22, 0x10, 0x00, 0x02, 0xbd, 0x10, 0x00, 0x03, 0x21,
    0x10, 0x00, 0x01, 0xf5, 0x10, 0x00, 0x02, 0x59, 0x10, 0x00, 0x01, 0x2d, 0x10, 0x00, 0x01, 0x91,
    0x10, 0x00, 0x00, 0x65, 0x10, 0x00, 0x00, 0xc9);

// Connection 2 (timestamps off), Linux SYN-ACK: MSS, NOP NOP SACK-permitted, NOP window scale.
// syn_ack_no_ts: 192.0.2.2 -> 192.0.2.9, 32 bytes
constexpr auto syn_ack_no_ts = make_bytes(
    0x1f, 0x92, 0x9c, 0x92, 0x75, 0x3f, 0xd9, 0xd9, 0x10, 0x00, 0x00, 0x01, 0x80, 0x12, 0xfa, 0xf0,
    0xd4, 0xc2, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x04, 0x02, 0x01, 0x03, 0x03, 0x0a);

// Connection 2 (timestamps off), Linux ACK with no options.
// ack_bare: 192.0.2.2 -> 192.0.2.9, 20 bytes
constexpr auto ack_bare = make_bytes(
    0x1f, 0x92, 0x9c, 0x92, 0x75, 0x3f, 0xd9, 0xda, 0x10, 0x00, 0x03, 0xe9, 0x50, 0x10, 0x00, 0x3f,
    0x0c, 0x62, 0x00, 0x00);

template <std::size_t N>
std::vector<std::byte> copy_of(const std::array<std::byte, N>& bytes) {
    return {bytes.begin(), bytes.end()};
}
std::vector<std::byte> copy_of(const_bytes bytes) { return {bytes.begin(), bytes.end()}; }

const_bytes cview(const std::vector<std::byte>& v) { return {v.data(), v.size()}; }
mutable_bytes mview(std::vector<std::byte>& v) { return {v.data(), v.size()}; }

std::vector<std::byte> bytes_of(std::initializer_list<int> values) {
    std::vector<std::byte> out;
    for (const int v : values) out.push_back(static_cast<std::byte>(v));
    return out;
}

std::uint16_t full_checksum(std::vector<std::byte> segment, ipv4_address src, ipv4_address dst) {
    tcp::packet<mutable_bytes> view{mview(segment)};
    view.fill_checksum(src, dst);
    return view.checksum();
}

// A segment with the given option bytes (padded by the caller to a multiple of 4) and payload,
// with a correct checksum, so that only the options can be the reason for a refusal.
std::vector<std::byte> segment_with_options(const std::vector<std::byte>& options, std::string_view payload = {}) {
    REQUIRE(options.size() % 4 == 0);
    std::vector<std::byte> out(tcp::header_len + options.size() + payload.size());
    tcp::packet<mutable_bytes> view{mview(out)};
    view.set_source_port(1111);
    view.set_destination_port(2222);
    view.set_seq_number(0x01020304);
    view.set_ack_number(0x05060708);
    view.set_data_offset(static_cast<std::uint8_t>((tcp::header_len + options.size()) / 4));
    view.set_flags(flag::ack | flag::psh);
    view.set_window(1000);
    std::ranges::copy(options, out.begin() + tcp::header_len);
    std::ranges::copy(as_bytes(payload), out.begin() + static_cast<std::ptrdiff_t>(tcp::header_len + options.size()));
    view.fill_checksum(host1, host2);
    return out;
}

struct golden {
    const char* name;
    const_bytes bytes;
    ipv4_address src;
    ipv4_address dst;
    tcp::repr expected;
};

tcp::repr make_repr(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq, std::uint32_t ack,
                    tcp::flag_set flags, std::uint16_t window) {
    tcp::repr r;
    r.source_port = sport;
    r.destination_port = dport;
    r.seq_number = seq;
    r.ack_number = ack;
    r.flags = flags;
    r.window = window;
    return r;
}

std::vector<golden> goldens() {
    std::vector<golden> all;
    {
        auto r = make_repr(40080, 8080, 3719243027u, 0, flag::syn, 64240);
        r.mss = 1460;
        r.sack_permitted = true;
        r.timestamps = tcp::timestamp_values{232008614u, 0};
        r.window_scale = 10;
        all.push_back({"syn", syn, host1, host2, r});
    }
    {
        auto r = make_repr(8080, 40080, 1034763458u, 3719243028u, flag::syn | flag::ack, 65160);
        r.mss = 1460;
        r.sack_permitted = true;
        r.timestamps = tcp::timestamp_values{1580285184u, 232008614u};
        r.window_scale = 10;
        all.push_back({"syn_ack", syn_ack, host2, host1, r});
    }
    {
        auto r = make_repr(40080, 8080, 3719243028u, 1034763459u, flag::psh | flag::ack, 63);
        r.timestamps = tcp::timestamp_values{232008614u, 1580285184u};
        r.payload_len = 14;
        all.push_back({"data", data, host1, host2, r});
    }
    {
        auto r = make_repr(8080, 40080, 1034763475u, 3719243042u, flag::fin | flag::ack, 64);
        r.timestamps = tcp::timestamp_values{1580285185u, 232008614u};
        all.push_back({"fin_ack", fin_ack, host2, host1, r});
    }
    {
        auto r = make_repr(8082, 40082, 0x70fef538u, 0x10000001u, flag::ack, 64);
        r.timestamps = tcp::timestamp_values{0x37c0922eu, 1000};
        r.sack_count = 3;
        r.sack_blocks[0] = {0x100001f5u, 0x10000259u};
        r.sack_blocks[1] = {0x1000012du, 0x10000191u};
        r.sack_blocks[2] = {0x10000065u, 0x100000c9u};
        all.push_back({"sack3_ts", sack3_ts, host2, host9, r});
    }
    {
        auto r = make_repr(8082, 40082, 0x753fd9dau, 0x10000001u, flag::ack, 63);
        r.sack_count = 4;
        r.sack_blocks[0] = {0x100002bdu, 0x10000321u};
        r.sack_blocks[1] = {0x100001f5u, 0x10000259u};
        r.sack_blocks[2] = {0x1000012du, 0x10000191u};
        r.sack_blocks[3] = {0x10000065u, 0x100000c9u};
        all.push_back({"sack4", sack4, host2, host9, r});
    }
    {
        auto r = make_repr(8082, 40082, 0x753fd9d9u, 0x10000001u, flag::syn | flag::ack, 64240);
        r.mss = 1460;
        r.sack_permitted = true;
        r.window_scale = 10;
        all.push_back({"syn_ack_no_ts", syn_ack_no_ts, host2, host9, r});
    }
    all.push_back({"ack_bare", ack_bare, host2, host9, make_repr(8082, 40082, 0x753fd9dau, 0x100003e9u, flag::ack, 63)});
    return all;
}

} // namespace

TEST_CASE("golden SYN decodes field by field") {
    const tcp::packet<const_bytes> view{syn};
    REQUIRE_FALSE(view.check_len());
    CHECK(view.source_port() == 40080);
    CHECK(view.destination_port() == 8080);
    CHECK(view.seq_number() == 3719243027u);
    CHECK(view.ack_number() == 0);
    CHECK(view.data_offset() == 10);
    CHECK(view.header_length() == 40);
    CHECK(view.flags() == tcp::flag_set{flag::syn});
    CHECK(view.flags().syn());
    CHECK_FALSE(view.flags().ack());
    CHECK(view.window() == 64240);
    CHECK(view.checksum() == 0xd0aa);
    CHECK(view.urgent_pointer() == 0);
    CHECK(view.options().size() == 20);
    CHECK(view.payload().empty());
    CHECK(view.verify_checksum(host1, host2));
    CHECK_FALSE(view.verify_checksum(host1, host9));

    // The options, in wire order, as option_reader hands them out (the NOP is skipped).
    tcp::option_reader reader{view.options()};
    tcp::option opt;
    REQUIRE(reader.next(opt));
    CHECK(opt.kind == tcp::option_kind::mss);
    CHECK(opt.mss() == 1460);
    REQUIRE(reader.next(opt));
    CHECK(opt.kind == tcp::option_kind::sack_permitted);
    CHECK(opt.data.empty());
    REQUIRE(reader.next(opt));
    CHECK(opt.kind == tcp::option_kind::timestamps);
    CHECK(opt.timestamps() == tcp::timestamp_values{232008614u, 0});
    REQUIRE(reader.next(opt));
    CHECK(opt.kind == tcp::option_kind::window_scale);
    CHECK(opt.window_scale() == 10);
    CHECK(opt.window_shift() == 10);
    CHECK_FALSE(reader.next(opt));
    CHECK_FALSE(reader.error());
}

TEST_CASE("golden data segment decodes field by field") {
    const auto view = tcp::packet<const_bytes>::checked(data);
    REQUIRE(view);
    CHECK(view->seq_number() == 3719243028u);
    CHECK(view->ack_number() == 1034763459u);
    CHECK(view->flags() == (flag::psh | flag::ack));
    CHECK(view->window() == 63);
    CHECK(view->header_length() == 32);
    const std::string_view text = "hello ankanet\n";
    CHECK(std::ranges::equal(view->payload(), as_bytes(text)));
    CHECK(view->verify_checksum(host1, host2));
}

TEST_CASE("golden SACK segments decode their blocks") {
    SECTION("three blocks beside timestamps") {
        const tcp::packet<const_bytes> view{sack3_ts};
        REQUIRE_FALSE(view.check_len());
        CHECK(view.header_length() == tcp::max_header_len);
        std::vector<std::uint8_t> kinds;
        std::size_t blocks = 0;
        tcp::sack_block first;
        const auto ec = tcp::for_each_option(view.options(), [&](const tcp::option& opt) {
            kinds.push_back(opt.kind);
            if (opt.kind == tcp::option_kind::sack) {
                blocks = opt.sack_block_count();
                first = opt.sack(0);
            }
        });
        CHECK_FALSE(ec);
        CHECK(kinds == std::vector<std::uint8_t>{tcp::option_kind::timestamps, tcp::option_kind::sack});
        CHECK(blocks == 3);
        CHECK(first == tcp::sack_block{0x100001f5u, 0x10000259u}); // bytes 501..600 of the stream
    }
    SECTION("four blocks without timestamps") {
        const auto r = tcp::repr::parse(const_bytes{sack4}, host2, host9);
        REQUIRE(r);
        REQUIRE(r->sacks().size() == 4);
        CHECK(r->sacks()[3] == tcp::sack_block{0x10000065u, 0x100000c9u});
        CHECK_FALSE(r->timestamps);
    }
}

TEST_CASE("golden segments parse to the expected repr") {
    for (const auto& g : goldens()) {
        INFO(g.name);
        const auto r = tcp::repr::parse(g.bytes, g.src, g.dst);
        REQUIRE(r);
        CHECK(*r == g.expected);
        CHECK(r->flags.bits() == g.expected.flags.bits());
        CHECK(r->mss == g.expected.mss);
        CHECK(r->window_scale == g.expected.window_scale);
        CHECK(r->timestamps == g.expected.timestamps);
        CHECK(r->payload_len == g.expected.payload_len);
    }
}

TEST_CASE("emit re-encodes Linux's segments byte for byte") {
    for (const auto& g : goldens()) {
        INFO(g.name);
        const auto r = tcp::repr::parse(g.bytes, g.src, g.dst);
        REQUIRE(r);
        const tcp::packet<const_bytes> view{g.bytes};
        CHECK(r->buffer_len() == view.header_length());
        // The caller puts the payload in place first; emit writes the header and the checksum.
        std::vector<std::byte> out(r->buffer_len() + r->payload_len, std::byte{0xee});
        std::ranges::copy(view.payload(), out.begin() + static_cast<std::ptrdiff_t>(r->buffer_len()));
        REQUIRE_FALSE(r->emit(mview(out), g.src, g.dst));
        CHECK(std::ranges::equal(out, g.bytes));
        // And from the expected repr, not only the parsed one.
        std::vector<std::byte> again(out.size());
        std::ranges::copy(view.payload(), again.begin() + static_cast<std::ptrdiff_t>(r->buffer_len()));
        REQUIRE_FALSE(g.expected.emit(mview(again), g.src, g.dst));
        CHECK(again == out);
    }
}

TEST_CASE("every truncation of a golden segment is refused") {
    for (const auto& g : goldens()) {
        const std::size_t hl = tcp::packet<const_bytes>{g.bytes}.header_length();
        for (std::size_t n = 0; n < g.bytes.size(); ++n) {
            INFO(g.name << " cut to " << n);
            const const_bytes cut = g.bytes.first(n);
            const tcp::packet<const_bytes> view{cut};
            const auto r = tcp::repr::parse(cut, g.src, g.dst);
            REQUIRE_FALSE(r);
            if (n < hl) {
                // The header (fixed part, then options) does not fit.
                CHECK(view.check_len() == errc::truncated);
                CHECK(r.error() == errc::truncated);
            } else {
                // Payload cut short: the lengths hold together, the checksum does not.
                CHECK_FALSE(view.check_len());
                CHECK(r.error() == errc::bad_checksum);
            }
        }
    }
}

TEST_CASE("every single-bit error in a golden segment is refused") {
    for (const auto& g : goldens()) {
        for (std::size_t bit = 0; bit < g.bytes.size() * 8; ++bit) {
            auto bytes = copy_of(g.bytes);
            bytes[bit / 8] ^= static_cast<std::byte>(1u << (bit % 8));
            INFO(g.name << " bit " << bit);
            CHECK_FALSE(tcp::repr::parse(cview(bytes), g.src, g.dst));
        }
    }
}

TEST_CASE("data offset below 5 words or past the buffer is refused") {
    auto bytes = copy_of(syn);
    tcp::packet<mutable_bytes> view{mview(bytes)};
    for (std::uint8_t words = 0; words < 5; ++words) {
        view.set_data_offset(words);
        view.fill_checksum(host1, host2);
        INFO("data offset " << int{words});
        CHECK(view.check_len() == errc::bad_header_length);
        CHECK(tcp::repr::parse(cview(bytes), host1, host2).error() == errc::bad_header_length);
        CHECK(tcp::repr::parse_ignoring_checksum(tcp::packet<const_bytes>{cview(bytes)}).error() == errc::bad_header_length);
    }
    for (std::uint8_t words = 11; words <= 15; ++words) { // the SYN is 10 words long
        view.set_data_offset(words);
        view.fill_checksum(host1, host2);
        INFO("data offset " << int{words});
        CHECK(view.check_len() == errc::truncated);
        CHECK(tcp::repr::parse(cview(bytes), host1, host2).error() == errc::truncated);
    }
    view.set_data_offset(5); // options become payload: still a well-formed segment
    view.fill_checksum(host1, host2);
    const auto r = tcp::repr::parse(cview(bytes), host1, host2);
    REQUIRE(r);
    CHECK(r->payload_len == 20);
    CHECK_FALSE(r->mss);
}

TEST_CASE("spans stay inside the buffer even when a data offset is set after check_len") {
    auto bytes = copy_of(data); // 46 bytes: a 32-byte header and 14 bytes of data
    tcp::packet<mutable_bytes> view{mview(bytes)};
    REQUIRE_FALSE(view.check_len());
    view.set_data_offset(15);
    CHECK(view.header_length() == 60);   // the field as it is
    CHECK(view.options().size() == 26);  // the spans only as far as the buffer goes
    CHECK(view.payload().empty());
    view.set_data_offset(2);
    CHECK(view.header_length() == 8);
    CHECK(view.options().empty());       // never inside the fixed header
    CHECK(view.payload().size() == 26);
}

TEST_CASE("a segment longer than the pseudo-header can describe is refused") {
    std::vector<std::byte> big(tcp::max_segment_len + 1);
    tcp::packet<mutable_bytes> view{mview(big)};
    view.set_data_offset(5);
    CHECK(view.check_len() == errc::bad_length);
    CHECK_FALSE(view.verify_checksum(host1, host2));
    CHECK(tcp::repr::parse(const_bytes{big}, host1, host2).error() == errc::bad_length);
    const mutable_bytes largest = mview(big).first(tcp::max_segment_len);
    tcp::packet<mutable_bytes> ok{largest};
    CHECK_FALSE(ok.check_len());
    ok.fill_checksum(host1, host2);
    CHECK(tcp::repr::parse(const_bytes{largest}, host1, host2).value().payload_len == tcp::max_segment_len - 20);
}

TEST_CASE("malformed options are refused") {
    struct bad { const char* what; std::vector<std::byte> options; };
    const std::vector<bad> cases = {
        {"unknown kind, length 0", bytes_of({0x22, 0x00, 0x01, 0x01})},
        {"unknown kind, length 1", bytes_of({0x22, 0x01, 0x01, 0x01})},
        {"MSS, length 0", bytes_of({0x02, 0x00, 0x05, 0xb4})},
        {"MSS, length 1", bytes_of({0x02, 0x01, 0x05, 0xb4})},
        {"kind byte with no length byte", bytes_of({0x01, 0x01, 0x01, 0x22})},
        {"MSS in the last byte", bytes_of({0x01, 0x01, 0x01, 0x02})},
        {"unknown option past the end", bytes_of({0x01, 0x01, 0x22, 0x05})},
        {"unknown option past the end by one byte", bytes_of({0x01, 0x01, 0x22, 0x03})},
        {"MSS past the end by one byte", bytes_of({0x01, 0x02, 0x04, 0x05})},
        {"window scale past the end by one byte", bytes_of({0x01, 0x01, 0x03, 0x03})},
        {"timestamps past the end", bytes_of({0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x08, 0x0a, 0, 0, 0, 1})},
        {"SACK past the end", bytes_of({0x01, 0x01, 0x05, 0x12, 0, 0, 0, 1, 0, 0, 0, 2})},
        {"MSS length 3", bytes_of({0x02, 0x03, 0x05, 0x01})},
        {"MSS length 5", bytes_of({0x02, 0x05, 0x05, 0xb4, 0x00, 0x01, 0x01, 0x01})},
        {"window scale length 2", bytes_of({0x03, 0x02, 0x01, 0x01})},
        {"window scale length 4", bytes_of({0x03, 0x04, 0x07, 0x00})},
        {"SACK-permitted length 3", bytes_of({0x04, 0x03, 0x00, 0x01})},
        {"SACK-permitted length 4", bytes_of({0x04, 0x04, 0x00, 0x00})},
        {"timestamps length 8", bytes_of({0x08, 0x08, 0, 0, 0, 1, 0, 2})},
        {"timestamps length 11", bytes_of({0x08, 0x0b, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0})},
        {"SACK with no block", bytes_of({0x01, 0x01, 0x05, 0x02})},
        {"SACK length 3", bytes_of({0x05, 0x03, 0x00, 0x01})},
        {"SACK length 9", bytes_of({0x01, 0x05, 0x09, 0, 0, 0, 1, 0, 0, 0, 2, 0})},
        {"SACK length 11", bytes_of({0x05, 0x0b, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0})},
        {"bad option after good ones", bytes_of({0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x07, 0x13, 0x00, 0x00, 0x00})},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        REQUIRE(c.options.size() % 4 == 0);
        const auto segment = segment_with_options(c.options, "payload");
        const tcp::packet<const_bytes> view{cview(segment)};
        REQUIRE_FALSE(view.check_len());
        REQUIRE(view.verify_checksum(host1, host2));
        CHECK(tcp::repr::parse(cview(segment), host1, host2).error() == errc::bad_option);

        tcp::option_reader reader{view.options()};
        tcp::option opt;
        while (reader.next(opt)) {}
        CHECK(reader.error() == errc::bad_option);
        CHECK_FALSE(reader.next(opt)); // the error sticks
        CHECK(reader.error() == errc::bad_option);
    }
}

TEST_CASE("SACK holds 1 to 4 blocks, and 5 cannot be read even where the bytes are there") {
    // Outside a TCP header (which has room for 40 option bytes) the reader still counts blocks.
    for (std::size_t blocks = 0; blocks <= 5; ++blocks) {
        std::vector<std::byte> options(2 + 8 * blocks, std::byte{0x11});
        options[0] = std::byte{tcp::option_kind::sack};
        options[1] = static_cast<std::byte>(options.size());
        tcp::option_reader reader{cview(options)};
        tcp::option opt;
        const bool read = reader.next(opt);
        INFO(blocks << " blocks");
        if (blocks >= 1 && blocks <= 4) {
            REQUIRE(read);
            CHECK(opt.sack_block_count() == blocks);
            CHECK(opt.sack(blocks - 1) == tcp::sack_block{0x11111111u, 0x11111111u});
            CHECK_FALSE(reader.error());
        } else {
            CHECK_FALSE(read);
            CHECK(reader.error() == errc::bad_option);
        }
    }
}

TEST_CASE("EOL ends the options, NOPs and unknown options are skipped") {
    SECTION("bytes after EOL are padding, even if they look like a bad option") {
        const auto segment = segment_with_options(bytes_of({0x02, 0x04, 0x02, 0x18, 0x00, 0x02, 0x00, 0x13}));
        const auto r = tcp::repr::parse(cview(segment), host1, host2);
        REQUIRE(r);
        CHECK(r->mss == 536);
        CHECK_FALSE(r->window_scale);
    }
    SECTION("unknown options are skipped by their length") {
        // TCP Fast Open cookie (34, len 10), an experimental option (254, len 4), then MSS.
        const auto segment = segment_with_options(bytes_of({0x22, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8, 0xfe, 0x04, 0xf9, 0x89,
                                                             0x02, 0x04, 0x05, 0x78, 0x01, 0x01}), "x");
        const auto r = tcp::repr::parse(cview(segment), host1, host2);
        REQUIRE(r);
        CHECK(r->mss == 1400);
        CHECK(r->payload_len == 1);
        std::vector<std::uint8_t> kinds;
        CHECK_FALSE(tcp::for_each_option(tcp::packet<const_bytes>{cview(segment)}.options(),
                                         [&](const tcp::option& opt) { kinds.push_back(opt.kind); }));
        CHECK(kinds == std::vector<std::uint8_t>{0x22, 0xfe, tcp::option_kind::mss});
    }
    SECTION("all NOPs, all EOLs") {
        for (const int filler : {0x00, 0x01}) {
            const auto segment = segment_with_options(std::vector<std::byte>(40, static_cast<std::byte>(filler)));
            const auto r = tcp::repr::parse(cview(segment), host1, host2);
            REQUIRE(r);
            CHECK_FALSE(r->mss);
            CHECK_FALSE(r->timestamps);
            CHECK(r->sack_count == 0);
        }
    }
    SECTION("a typed option twice: the last one wins") {
        const auto segment = segment_with_options(bytes_of({0x02, 0x04, 0x05, 0xb4, 0x02, 0x04, 0x02, 0x18}));
        CHECK(tcp::repr::parse(cview(segment), host1, host2).value().mss == 536);
    }
}

TEST_CASE("window scale above 14 is reported and clamped") {
    for (const int shift : {14, 15, 255}) {
        INFO("shift " << shift);
        const auto segment = segment_with_options(bytes_of({0x01, 0x03, 0x03, shift}));
        const auto r = tcp::repr::parse(cview(segment), host1, host2);
        REQUIRE(r);
        CHECK(r->window_scale == shift); // as sent
        CHECK(r->window_shift() == std::min(shift, 14));
        CHECK(r->window_scale_clamped() == (shift > 14));
        tcp::option_reader reader{tcp::packet<const_bytes>{cview(segment)}.options()};
        tcp::option opt;
        REQUIRE(reader.next(opt));
        CHECK(opt.window_shift() == std::min(shift, 14));
        // Re-encoded as sent: the peer's own clamping is its business.
        std::vector<std::byte> out(r->buffer_len() + r->payload_len);
        REQUIRE_FALSE(r->emit(mview(out), host1, host2));
        CHECK(out == segment);
    }
    tcp::repr none;
    CHECK_FALSE(none.window_shift());
    CHECK_FALSE(none.window_scale_clamped());
}

TEST_CASE("flags: named bits, reserved bits kept") {
    const tcp::flag_set f = flag::syn | flag::ece | flag::cwr;
    CHECK(f.syn());
    CHECK(f.ece());
    CHECK(f.cwr());
    CHECK_FALSE(f.ack());
    CHECK_FALSE(f.fin());
    CHECK(f.bits() == 0x0c2);
    tcp::flag_set g = f;
    g.set(flag::ack).set(flag::syn, false);
    CHECK(g == (flag::ack | flag::ece | flag::cwr));
    CHECK(tcp::flag_set{std::uint16_t{0xffff}}.bits() == 0x0fff); // the data offset is not a flag

    // Every bit after the data offset survives a parse and an emit, reserved ones included.
    auto bytes = copy_of(fin_ack);
    tcp::packet<mutable_bytes> view{mview(bytes)};
    for (std::uint16_t bit = 0; bit < 12; ++bit) {
        const tcp::flag_set one{static_cast<std::uint16_t>(1u << bit)};
        view.set_flags(one);
        view.fill_checksum(host2, host1);
        INFO("bit " << bit);
        CHECK(view.data_offset() == 8);
        const auto r = tcp::repr::parse(cview(bytes), host2, host1);
        REQUIRE(r);
        CHECK(r->flags == one);
        std::vector<std::byte> out(bytes.size());
        REQUIRE_FALSE(r->emit(mview(out), host2, host1));
        CHECK(out == bytes);
    }
    view.set_flags(flag::ae);
    CHECK(bytes[12] == std::byte{0x81}); // data offset 8, AE is the low bit of byte 12
    CHECK(view.flags().ae());
}

TEST_CASE("emit lays options out as Linux does, packing them only when that does not fit") {
    auto base = make_repr(1, 2, 3, 4, flag::ack, 5);

    SECTION("no options") {
        CHECK(base.buffer_len() == 20);
    }
    SECTION("timestamps alone: NOP NOP TS") {
        base.timestamps = tcp::timestamp_values{1, 2};
        CHECK(base.buffer_len() == 32);
        std::vector<std::byte> out(base.buffer_len());
        REQUIRE_FALSE(base.emit(mview(out), host1, host2));
        CHECK(std::ranges::equal(const_bytes{out}.subspan(20, 4), bytes_of({1, 1, 8, 10})));
    }
    SECTION("window scale, timestamps and 3 SACK blocks: 46 aligned bytes, so packed in 40") {
        base.window_scale = 7;
        base.timestamps = tcp::timestamp_values{0xaabbccdd, 0x11223344};
        base.sack_count = 3;
        base.sack_blocks = {{{10, 20}, {30, 40}, {50, 60}, {}}};
        REQUIRE(base.buffer_len() == 60);
        std::vector<std::byte> out(base.buffer_len() + 3);
        out[60] = std::byte{'a'}; out[61] = std::byte{'b'}; out[62] = std::byte{'c'};
        base.payload_len = 3;
        REQUIRE_FALSE(base.emit(mview(out), host1, host2));
        // TS, WS, SACK back to back, then one EOL.
        CHECK(out[20] == std::byte{8});
        CHECK(out[30] == std::byte{3});
        CHECK(out[33] == std::byte{5});
        CHECK(out[34] == std::byte{26});
        CHECK(out[59] == std::byte{0});
        const auto back = tcp::repr::parse(cview(out), host1, host2);
        REQUIRE(back);
        CHECK(*back == base);
    }
    SECTION("more than fits in 40 bytes even packed is refused") {
        base.mss = 1460;
        base.sack_permitted = true;
        base.timestamps = tcp::timestamp_values{1, 2};
        base.sack_count = 3; // 4 + 2 + 10 + 26 = 42
        std::vector<std::byte> out(100);
        CHECK(base.emit(mview(out), host1, host2) == errc::bad_option);
        base.sack_count = 2;
        CHECK_FALSE(base.emit(mview(out), host1, host2));
    }
    SECTION("more than 4 SACK blocks is refused") {
        base.sack_count = 5;
        std::vector<std::byte> out(100);
        CHECK(base.emit(mview(out), host1, host2) == errc::bad_option);
    }
    SECTION("short buffers and oversized payloads are refused") {
        base.mss = 1460;
        base.payload_len = 10;
        std::vector<std::byte> out(base.buffer_len() + 9);
        CHECK(base.emit(mview(out), host1, host2) == errc::buffer_too_small);
        std::vector<std::byte> none;
        CHECK(base.emit(mview(none), host1, host2) == errc::buffer_too_small);
        base.payload_len = tcp::max_segment_len - 24 + 1;
        std::vector<std::byte> big(tcp::max_segment_len + 1);
        CHECK(base.emit(mview(big), host1, host2) == errc::bad_length);
        base.payload_len = tcp::max_segment_len - 24;
        CHECK_FALSE(base.emit(mview(big), host1, host2));
    }
}

TEST_CASE("setters write the fields they name") {
    auto bytes = copy_of(data);
    tcp::packet<mutable_bytes> view{mview(bytes)};
    view.set_source_port(0x0102);
    view.set_destination_port(0x0304);
    view.set_seq_number(0x05060708);
    view.set_ack_number(0x090a0b0c);
    view.set_flags(flag::rst);
    view.set_window(0x0d0e);
    view.set_checksum(0x0f10);
    view.set_urgent_pointer(0x1112);
    CHECK(std::ranges::equal(const_bytes{bytes}.first(20),
                             bytes_of({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x80, 0x04, 13, 14, 15, 16, 17, 18})));
    view.set_data_offset(6);
    CHECK(view.flags() == tcp::flag_set{flag::rst});
    CHECK(view.header_length() == 24);
    CHECK(view.options().size() == 4);
    CHECK(view.payload().size() == bytes.size() - 24);
}

TEST_CASE("NAT rewrite of golden segments equals a full recomputation") {
    for (const auto& g : goldens()) {
        INFO(g.name);
        auto bytes = copy_of(g.bytes);
        tcp::packet<mutable_bytes> view{mview(bytes)};
        // Source NAT out through 203.0.113.7:61000, destination rewritten as a port forward would.
        const ipv4_address outside{203, 0, 113, 7};
        const ipv4_address inside{10, 0, 2, 15};
        view.rewrite_source_port(61000);
        view.rewrite_pseudo_header_address(g.src, outside);
        view.rewrite_destination_port(22);
        view.rewrite_pseudo_header_address(g.dst, inside);
        CHECK(view.source_port() == 61000);
        CHECK(view.destination_port() == 22);
        CHECK(view.verify_checksum(outside, inside));
        CHECK(view.checksum() == full_checksum(bytes, outside, inside));
        CHECK(tcp::repr::parse(cview(bytes), outside, inside));
    }
}

TEST_CASE("incremental updates equal full recomputation on random segments") {
    std::mt19937 rng{20240611};
    auto u16 = [&] { return static_cast<std::uint16_t>(rng() & 0xffff); };
    auto addr = [&] { return ipv4_address{static_cast<std::uint32_t>(rng())}; };
    for (int iteration = 0; iteration < 20000; ++iteration) {
        std::vector<std::byte> bytes(tcp::header_len + rng() % 80); // odd lengths too
        std::ranges::generate(bytes, [&] { return static_cast<std::byte>(rng()); });
        tcp::packet<mutable_bytes> view{mview(bytes)};
        view.set_data_offset(5);
        ipv4_address src = addr();
        ipv4_address dst = addr();
        view.fill_checksum(src, dst);
        for (int step = 0; step < 4; ++step) {
            switch (rng() % 4) {
            case 0: view.rewrite_source_port(u16()); break;
            case 1: view.rewrite_destination_port(u16()); break;
            case 2: { const auto to = addr(); view.rewrite_pseudo_header_address(src, to); src = to; break; }
            default: { const auto to = addr(); view.rewrite_pseudo_header_address(dst, to); dst = to; break; }
            }
            INFO("iteration " << iteration << " step " << step);
            REQUIRE(view.checksum() == full_checksum(bytes, src, dst));
            REQUIRE(view.verify_checksum(src, dst));
        }
    }
}

TEST_CASE("incremental update to a checksum of 0 equals recomputation") {
    auto bytes = copy_of(syn);
    tcp::packet<mutable_bytes> view{mview(bytes)};
    int found = -1;
    for (int port = 0; port <= 0xffff && found < 0; ++port) {
        auto probe = bytes;
        tcp::packet<mutable_bytes>{mview(probe)}.set_source_port(static_cast<std::uint16_t>(port));
        if (full_checksum(probe, host1, host2) == 0) found = port;
    }
    REQUIRE(found >= 0);
    view.rewrite_source_port(static_cast<std::uint16_t>(found));
    CHECK(view.checksum() == 0x0000); // TCP has no "no checksum": 0 is an ordinary value
    CHECK(view.verify_checksum(host1, host2));
    view.rewrite_source_port(40080);
    CHECK(std::ranges::equal(bytes, syn));
}

TEST_CASE("parse and emit round-trip random reprs") {
    std::mt19937 rng{99};
    auto coin = [&] { return (rng() & 1) != 0; };
    int packed = 0;
    for (int iteration = 0; iteration < 5000; ++iteration) {
        tcp::repr r = make_repr(static_cast<std::uint16_t>(rng()), static_cast<std::uint16_t>(rng()),
                                static_cast<std::uint32_t>(rng()), static_cast<std::uint32_t>(rng()),
                                tcp::flag_set{static_cast<std::uint16_t>(rng())}, static_cast<std::uint16_t>(rng()));
        r.urgent_pointer = static_cast<std::uint16_t>(rng());
        if (coin()) r.mss = static_cast<std::uint16_t>(rng());
        if (coin()) r.window_scale = static_cast<std::uint8_t>(rng());
        r.sack_permitted = coin();
        if (coin()) r.timestamps = tcp::timestamp_values{static_cast<std::uint32_t>(rng()), static_cast<std::uint32_t>(rng())};
        r.sack_count = static_cast<std::uint8_t>(rng() % 5);
        for (std::size_t i = 0; i < r.sack_count; ++i) {
            r.sack_blocks[i] = {static_cast<std::uint32_t>(rng()), static_cast<std::uint32_t>(rng())};
        }
        r.payload_len = rng() % 40;
        std::vector<std::byte> out(80 + r.payload_len);
        const auto ec = r.emit(mview(out), host1, host9);
        if (ec) {
            // Only a repr whose options cannot fit in 40 bytes is refused.
            CHECK(ec == errc::bad_option);
            CHECK(r.options_len() > tcp::max_options_len);
            continue;
        }
        REQUIRE(r.buffer_len() <= tcp::max_header_len);
        REQUIRE(r.buffer_len() % 4 == 0);
        out.resize(r.buffer_len() + r.payload_len);
        const auto back = tcp::repr::parse(cview(out), host1, host9);
        REQUIRE(back);
        CHECK(*back == r);
        // Linux's aligned layout, as the header documents it; past 40 bytes emit packs instead.
        const std::size_t aligned = (r.mss ? 4u : 0u) + (r.timestamps ? 12u : r.sack_permitted ? 4u : 0u) +
                                    (r.window_scale ? 4u : 0u) + (r.sack_count ? 4u + 8u * r.sack_count : 0u);
        if (aligned > tcp::max_options_len) {
            ++packed;
        } else {
            CHECK(r.options_len() == aligned);
        }
    }
    CHECK(packed > 0); // the packed layout was exercised too
}
