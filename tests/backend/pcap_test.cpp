#include <ankanet/backend/pcap.hpp>

#include "../support/skip.hpp"

#include <ankanet/backend/memory.hpp>
#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/ethernet.hpp>
#include <ankanet/wire/icmp.hpp>
#include <ankanet/wire/ipv4.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include "../support/temp_dir.hpp"

using namespace ankanet;
using namespace ankanet::backend;
using namespace ankanet::wire;
namespace fs = std::filesystem;

using ankanet::test::temp_dir;

namespace {

// --- fixtures ---------------------------------------------------------------------------------

/// A clock the test sets; copies share the time, so the writer's copy follows the test's.
struct manual_clock {
    using duration = std::chrono::nanoseconds;
    using time_point = std::chrono::time_point<manual_clock, duration>;
    std::shared_ptr<duration> value = std::make_shared<duration>(0);
    time_point now() const noexcept { return time_point{*value}; }
    void set(std::chrono::nanoseconds since_epoch) const { *value = since_epoch; }
};
using test_writer = basic_pcap_writer<manual_clock>;

std::vector<std::uint8_t> read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::uint32_t le32(const std::vector<std::uint8_t>& b, std::size_t at) {
    return std::uint32_t{b.at(at)} | std::uint32_t{b.at(at + 1)} << 8 | std::uint32_t{b.at(at + 2)} << 16 |
           std::uint32_t{b.at(at + 3)} << 24;
}

/// One record as read back from a file.
struct record {
    std::uint32_t seconds = 0, fraction = 0, captured = 0, original = 0;
    std::vector<std::uint8_t> data;
};

/// Walks the records after the 24-byte header; fails the test when the framing is broken.
std::vector<record> records_of(const std::vector<std::uint8_t>& file) {
    std::vector<record> out;
    std::size_t at = pcap::file_header_len;
    while (at < file.size()) {
        REQUIRE(at + pcap::record_header_len <= file.size());
        record r{le32(file, at), le32(file, at + 4), le32(file, at + 8), le32(file, at + 12), {}};
        at += pcap::record_header_len;
        REQUIRE(at + r.captured <= file.size());
        r.data.assign(file.begin() + static_cast<std::ptrdiff_t>(at), file.begin() + static_cast<std::ptrdiff_t>(at + r.captured));
        at += r.captured;
        out.push_back(std::move(r));
    }
    return out;
}

std::vector<std::uint8_t> to_u8(const_bytes bytes) {
    std::vector<std::uint8_t> out(bytes.size());
    for (std::size_t i = 0; i < bytes.size(); ++i) out[i] = static_cast<std::uint8_t>(bytes[i]);
    return out;
}

const mac_address guest_mac = *mac_address::parse("52:54:00:12:34:56");
const mac_address gateway_mac = *mac_address::parse("5a:94:ef:e4:0c:ee");
constexpr ipv4_address guest_ip{192, 168, 64, 2};
constexpr ipv4_address gateway_ip{192, 168, 64, 1};

/// An Ethernet frame holding an ARP packet, built with the wire layer (42 bytes, unpadded).
std::vector<std::byte> arp_frame(const arp::repr& message, mac_address source, mac_address destination) {
    std::vector<std::byte> frame(ethernet::header_len + arp::packet_len);
    REQUIRE_FALSE(ethernet::repr{source, destination, ethernet::ethertype::arp, {}}.emit(frame));
    REQUIRE_FALSE(message.emit(mutable_bytes{frame}.subspan(ethernet::header_len)));
    return frame;
}

/// An Ethernet frame holding an IPv4 ICMP echo request with `data_len` bytes of data.
std::vector<std::byte> echo_request_frame(std::uint16_t id, std::uint16_t sequence, std::size_t data_len) {
    std::vector<std::byte> data(data_len);
    for (std::size_t i = 0; i < data_len; ++i) data[i] = std::byte(i & 0xff);
    const icmp::repr message{icmp::echo_request{id, sequence, data}};
    ipv4::repr ip;
    ip.source = guest_ip;
    ip.destination = gateway_ip;
    ip.protocol = ipv4::protocol::icmp;
    ip.ttl = 64;
    ip.identification = 0x1c46;
    ip.dont_fragment = true;
    ip.payload_len = message.buffer_len();

    std::vector<std::byte> frame(ethernet::header_len + ip.buffer_len() + message.buffer_len());
    const mutable_bytes out{frame};
    REQUIRE_FALSE(ethernet::repr{guest_mac, gateway_mac, ethernet::ethertype::ipv4, {}}.emit(out));
    REQUIRE_FALSE(ip.emit(out.subspan(ethernet::header_len)));
    REQUIRE_FALSE(message.emit(out.subspan(ethernet::header_len + ip.buffer_len())));
    return frame;
}

const arp::repr who_has{arp::operation::request, guest_mac, guest_ip, mac_address{}, gateway_ip};

// --- tcpdump ----------------------------------------------------------------------------------

bool have_tcpdump() { return std::system("tcpdump --version >/dev/null 2>&1") == 0; }

struct tcpdump_output {
    int status = -1;
    std::string text;
};

/// Runs the real tcpdump on `file`: -nn (no name lookups), -e (link-level header), -xx (hex of
/// the whole frame), -tt (timestamps as seconds since the epoch, independent of the time zone).
tcpdump_output run_tcpdump(const fs::path& file) {
    const std::string command = "tcpdump -r '" + file.string() + "' -nn -e -xx -tt 2>&1";
    tcpdump_output out;
    FILE* pipe = ::popen(command.c_str(), "r");
    REQUIRE(pipe != nullptr);
    std::array<char, 4096> chunk{};
    std::size_t n = 0;
    while ((n = std::fread(chunk.data(), 1, chunk.size(), pipe)) > 0) out.text.append(chunk.data(), n);
    const int status = ::pclose(pipe);
    out.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return out;
}

/// The frames tcpdump printed with -xx, rebuilt from its hex lines ("\t0x0010:  0800 0604 ...").
std::vector<std::vector<std::uint8_t>> frames_from_hex(const std::string& text) {
    std::vector<std::vector<std::uint8_t>> frames;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        const auto colon = line.find(":  ");
        if (line.rfind("\t0x", 0) != 0 || colon == std::string::npos) continue;
        if (line.compare(1, colon - 1, "0x0000") == 0) frames.emplace_back();
        std::istringstream words(line.substr(colon + 3));
        std::string word;
        while (words >> word) {
            for (std::size_t i = 0; i + 1 < word.size(); i += 2) {
                frames.back().push_back(static_cast<std::uint8_t>(std::stoul(word.substr(i, 2), nullptr, 16)));
            }
        }
    }
    return frames;
}

struct received {
    std::error_code ec;
    std::size_t size = 0;
    bool done = false;
};

template <class Backend>
void receive_one(Backend& backend, std::vector<std::byte>& buffer, received& out) {
    backend.async_receive(buffer, [&out](std::error_code ec, std::size_t n) {
        out = {ec, n, true};
    });
}

} // namespace

// --- the file format --------------------------------------------------------------------------

TEST_CASE("pcap: the file header is the classic one, byte for byte") {
    temp_dir dir;
    SECTION("microseconds") {
        {
            auto writer = pcap_writer::open(dir / "us.pcap");
            REQUIRE(writer);
            CHECK(writer->stats().bytes_written == pcap::file_header_len); // written at open, not later
        }
        // magic a1b2c3d4, 2.4, thiszone 0, sigfigs 0, snaplen 65538, LINKTYPE_ETHERNET; little-endian.
        const std::vector<std::uint8_t> expected{0xd4, 0xc3, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
                                                 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00};
        CHECK(read_file(dir / "us.pcap") == expected);
        CHECK(pcap::default_snaplen >= max_frame_len(max_mtu));
    }
    SECTION("nanoseconds, another snaplen") {
        pcap_options options;
        options.resolution = pcap_timestamp::nanoseconds;
        options.snaplen = 1518;
        REQUIRE(pcap_writer::open(dir / "ns.pcap", options));
        const std::vector<std::uint8_t> expected{0x4d, 0x3c, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
                                                 0x00, 0x00, 0x00, 0x00, 0xee, 0x05, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00};
        CHECK(read_file(dir / "ns.pcap") == expected);
    }
}

TEST_CASE("pcap: records carry the clock's time, the lengths and the bytes") {
    temp_dir dir;
    manual_clock clock;
    const auto frame = arp_frame(who_has, guest_mac, mac_address::broadcast());
    SECTION("microsecond resolution") {
        {
            auto writer = test_writer::open(dir / "r.pcap", {}, clock);
            REQUIRE(writer);
            clock.set(std::chrono::seconds{1'700'000'000} + std::chrono::nanoseconds{123'456'789});
            writer->write(frame);
            writer->write(frame, manual_clock::time_point{std::chrono::seconds{5}}); // an explicit time
            CHECK(writer->stats().records == 2);
        }
        const auto file = read_file(dir / "r.pcap");
        REQUIRE(file.size() == 24 + 2 * (16 + 42));
        // Record header: ts_sec, ts_usec (truncated, not rounded), incl_len, orig_len.
        const std::vector<std::uint8_t> header{0x00, 0xf1, 0x53, 0x65, 0x40, 0xe2, 0x01, 0x00,
                                               0x2a, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x00, 0x00};
        CHECK(std::vector<std::uint8_t>(file.begin() + 24, file.begin() + 40) == header);
        const auto records = records_of(file);
        REQUIRE(records.size() == 2);
        CHECK(records[0].seconds == 1'700'000'000u);
        CHECK(records[0].fraction == 123'456u);
        CHECK(records[0].data == to_u8(frame));
        CHECK(records[1].seconds == 5u);
        CHECK(records[1].fraction == 0u);
    }
    SECTION("nanosecond resolution keeps the nanoseconds") {
        pcap_options options;
        options.resolution = pcap_timestamp::nanoseconds;
        {
            auto writer = test_writer::open(dir / "n.pcap", options, clock);
            REQUIRE(writer);
            clock.set(std::chrono::seconds{1'700'000'000} + std::chrono::nanoseconds{123'456'789});
            writer->write(frame);
        }
        const auto records = records_of(read_file(dir / "n.pcap"));
        REQUIRE(records.size() == 1);
        CHECK(records[0].fraction == 123'456'789u);
    }
    SECTION("a time before the epoch is written as zero") {
        {
            auto writer = test_writer::open(dir / "z.pcap", {}, clock);
            REQUIRE(writer);
            clock.set(std::chrono::nanoseconds{-5});
            writer->write(frame);
        }
        const auto records = records_of(read_file(dir / "z.pcap"));
        REQUIRE(records.size() == 1);
        CHECK(records[0].seconds == 0u);
        CHECK(records[0].fraction == 0u);
    }
}

TEST_CASE("pcap: a frame longer than snaplen is cut to it, with its original length kept") {
    temp_dir dir;
    pcap_options options;
    options.snaplen = 64;
    {
        auto writer = pcap_writer::open(dir / "cut.pcap", options);
        REQUIRE(writer);
        const auto frame = echo_request_frame(1, 1, 200);
        writer->write(frame);
        writer->write(arp_frame(who_has, guest_mac, mac_address::broadcast()));
        CHECK(writer->stats().records == 2);
        CHECK(writer->stats().records_truncated == 1);
    }
    const auto records = records_of(read_file(dir / "cut.pcap"));
    REQUIRE(records.size() == 2);
    CHECK(records[0].captured == 64u);
    CHECK(records[0].original == 14u + 20u + 8u + 200u);
    CHECK(records[1].captured == 42u);
    CHECK(records[1].original == 42u);

    CHECK(pcap_writer::open(dir / "tiny.pcap", pcap_options{pcap_timestamp::microseconds, 13, 4096, 0600}).error() ==
          std::errc::invalid_argument);
}

TEST_CASE("pcap: writes are buffered up to the bound, then flushed, and flush and close write the rest") {
    temp_dir dir;
    pcap_options options;
    options.snaplen = 100;
    options.buffer_size = 1; // raised to the minimum: one file header and one largest record
    const fs::path path = dir / "buffered.pcap";
    auto writer = pcap_writer::open(path, options);
    REQUIRE(writer);
    const auto frame = arp_frame(who_has, guest_mac, mac_address::broadcast()); // 58-byte records
    const std::size_t capacity = pcap::file_header_len + pcap::record_header_len + 100;

    writer->write(frame);
    CHECK(fs::file_size(path) == 24); // buffered, not written
    CHECK(writer->buffered() == 58);
    writer->write(frame);
    CHECK(writer->buffered() == 116);
    REQUIRE(116 + 58 > capacity);
    writer->write(frame); // does not fit: the two before are written first
    CHECK(fs::file_size(path) == 24 + 116);
    CHECK(writer->buffered() == 58);
    CHECK_FALSE(writer->flush());
    CHECK(fs::file_size(path) == 24 + 3 * 58);
    CHECK(writer->buffered() == 0);
    writer->write(frame);
    CHECK_FALSE(writer->close());
    CHECK(fs::file_size(path) == 24 + 4 * 58);
    CHECK_FALSE(writer->is_open());

    writer->write(frame); // after close: counted, not written
    CHECK(writer->stats().records == 4);
    CHECK(writer->stats().records_dropped == 1);
    CHECK(writer->stats().bytes_written == 24 + 4 * 58);
    CHECK(writer->stats().write_errors == 0);
}

TEST_CASE("pcap: an open failure is a result error, and the message names the file") {
    temp_dir dir;
    const fs::path missing = dir / "no-such-dir/capture.pcap";
    const auto writer = pcap_writer::open(missing);
    REQUIRE_FALSE(writer);
    CHECK(writer.error() == std::errc::no_such_file_or_directory);
    const std::string message = pcap_error_message(missing, writer.error());
    CHECK(message.find(missing.string()) != std::string::npos);
    CHECK(message.find("No such file or directory") != std::string::npos);

    // The header is written at open, so a device that takes nothing fails there, not later.
    if (fs::exists("/dev/full")) {
        const auto full = pcap_writer::open("/dev/full");
        REQUIRE_FALSE(full);
        CHECK(full.error() == std::errc::no_space_on_device);
    }
}

TEST_CASE("pcap: write errors are counted, never thrown, and the file keeps its framing") {
    ANKANET_REQUIRE_ENVIRONMENT(fs::exists("/dev/full"), "/dev/full is needed to make writes fail");
    temp_dir dir;
    pcap_options options;
    options.snaplen = 100;
    options.buffer_size = 1; // minimum: 140 bytes, two 58-byte records
    const fs::path path = dir / "errors.pcap";
    auto writer = pcap_writer::open(path, options);
    REQUIRE(writer);
    const int fd = writer->native_handle();
    const int saved = ::dup(fd);
    const int full = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
    REQUIRE(saved >= 0);
    REQUIRE(full >= 0);

    std::vector<std::vector<std::byte>> frames;
    for (std::uint16_t i = 0; i < 6; ++i) frames.push_back(echo_request_frame(7, i, 0)); // 42-byte frames, 58-byte records

    writer->write(frames[0]);
    REQUIRE(::dup2(full, fd) == fd); // from now on every write(2) fails with ENOSPC
    writer->write(frames[1]);
    writer->write(frames[2]); // no room: the flush fails, the buffer is still full: dropped
    CHECK(writer->stats().write_errors == 1);
    CHECK(writer->last_error() == std::errc::no_space_on_device);
    CHECK(writer->stats().records_dropped == 1);
    CHECK(writer->flush() == std::errc::no_space_on_device);
    CHECK(writer->stats().write_errors == 2);
    writer->write(frames[3]); // dropped too
    CHECK(writer->stats().records_dropped == 2);

    REQUIRE(::dup2(saved, fd) == fd); // the disk "frees up"
    writer->write(frames[4]); // the retained records go out first, then this one is buffered
    writer->write(frames[5]);
    CHECK_FALSE(writer->close());
    ::close(saved);
    ::close(full);

    CHECK(writer->stats().records == 4);
    const auto records = records_of(read_file(path)); // REQUIREs the framing to be intact
    REQUIRE(records.size() == 4);
    CHECK(records[0].data == to_u8(frames[0]));
    CHECK(records[1].data == to_u8(frames[1]));
    CHECK(records[2].data == to_u8(frames[4]));
    CHECK(records[3].data == to_u8(frames[5]));
}

TEST_CASE("pcap: a writer is movable and the moved-from one is closed") {
    temp_dir dir;
    auto opened = pcap_writer::open(dir / "moved.pcap");
    REQUIRE(opened);
    pcap_writer writer = std::move(*opened);
    CHECK(writer.is_open());
    CHECK_FALSE(opened->is_open());
    writer.write(arp_frame(who_has, guest_mac, mac_address::broadcast()));
    CHECK_FALSE(writer.close());
    CHECK(fs::file_size(dir / "moved.pcap") == 24 + 58);
}

// --- the recorder -----------------------------------------------------------------------------

TEST_CASE("pcap: a recorder over a memory link records both directions, and tcpdump decodes them") {
    ANKANET_REQUIRE_ENVIRONMENT(have_tcpdump(), "tcpdump is not installed (apt-get install tcpdump)");
    temp_dir dir;
    const fs::path path = dir / "link.pcap";
    manual_clock clock;
    boost::asio::io_context io;
    auto [guest_end, host_end] = make_memory_link(io.get_executor());

    auto recorder = pcap_recorder<memory_endpoint, manual_clock>::open(std::move(guest_end), path, {}, clock);
    REQUIRE(recorder);
    static_assert(frame_backend<pcap_recorder<memory_endpoint, manual_clock>>);

    const auto request = arp_frame(who_has, guest_mac, mac_address::broadcast());
    const auto reply = arp_frame(who_has.reply_from(gateway_mac), gateway_mac, guest_mac);
    const auto ping = echo_request_frame(0x1234, 1, 56);
    REQUIRE(ping.size() == 98);

    // Guest -> link: sent through the recorder.
    clock.set(std::chrono::seconds{1'700'000'000} + std::chrono::microseconds{1});
    REQUIRE_FALSE(recorder->send(request));
    // Link -> guest: received through the recorder.
    REQUIRE_FALSE(host_end.send(reply));
    REQUIRE_FALSE(host_end.send(ping));
    std::vector<std::byte> buffer(max_frame_len(recorder->mtu()));
    for (int i = 0; i < 2; ++i) {
        clock.set(std::chrono::seconds{1'700'000'001 + i} + std::chrono::microseconds{250'000});
        received r;
        receive_one(*recorder, buffer, r);
        io.restart();
        io.run();
        REQUIRE(r.done);
        REQUIRE_FALSE(r.ec);
    }
    // A refused frame crosses nothing and is not recorded.
    CHECK(recorder->send(std::vector<std::byte>(10)) == errc::truncated);

    const auto writer = recorder->writer();
    CHECK(writer->stats().records == 3);
    REQUIRE_FALSE(writer->flush());

    const auto dump = run_tcpdump(path);
    INFO(dump.text);
    REQUIRE(dump.status == 0);
    CHECK(dump.text.find("link-type EN10MB (Ethernet)") != std::string::npos);
    CHECK(dump.text.find("1700000000.000001 52:54:00:12:34:56 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: "
                         "Request who-has 192.168.64.1 tell 192.168.64.2, length 28") != std::string::npos);
    CHECK(dump.text.find("1700000001.250000 5a:94:ef:e4:0c:ee > 52:54:00:12:34:56, ethertype ARP (0x0806), length 42: "
                         "Reply 192.168.64.1 is-at 5a:94:ef:e4:0c:ee, length 28") != std::string::npos);
    CHECK(dump.text.find("1700000002.250000 52:54:00:12:34:56 > 5a:94:ef:e4:0c:ee, ethertype IPv4 (0x0800), length 98: "
                         "192.168.64.2 > 192.168.64.1: ICMP echo request, id 4660, seq 1, length 64") != std::string::npos);
    // tcpdump's hex dump of each record is the frame, byte for byte.
    const auto frames = frames_from_hex(dump.text);
    REQUIRE(frames.size() == 3);
    CHECK(frames[0] == to_u8(request));
    CHECK(frames[1] == to_u8(reply));
    CHECK(frames[2] == to_u8(ping));
}

TEST_CASE("pcap: recorders sharing one writer put every port in one file") {
    ANKANET_REQUIRE_ENVIRONMENT(have_tcpdump(), "tcpdump is not installed (apt-get install tcpdump)");
    temp_dir dir;
    const fs::path path = dir / "all.pcap";
    boost::asio::io_context io;
    auto opened = pcap_writer::open(path);
    REQUIRE(opened);
    const auto writer = std::make_shared<pcap_writer>(std::move(*opened));

    auto [vm0, peer0] = make_memory_link(io.get_executor());
    auto [vm1, peer1] = make_memory_link(io.get_executor());
    pcap_recorder port0{std::move(vm0), writer};
    pcap_recorder port1{std::move(vm1), writer};
    REQUIRE_FALSE(port0.send(arp_frame(who_has, guest_mac, mac_address::broadcast())));
    REQUIRE_FALSE(port1.send(echo_request_frame(1, 2, 8)));
    REQUIRE_FALSE(port0.send(echo_request_frame(1, 3, 8)));
    port0.close();
    port1.close(); // closing a port leaves the shared writer open
    CHECK(writer->is_open());
    REQUIRE_FALSE(writer->close());

    const auto dump = run_tcpdump(path);
    INFO(dump.text);
    REQUIRE(dump.status == 0);
    CHECK(frames_from_hex(dump.text).size() == 3);
    CHECK(dump.text.find("Request who-has 192.168.64.1 tell 192.168.64.2") != std::string::npos);
    CHECK(dump.text.find("ICMP echo request, id 1, seq 2, length 16") != std::string::npos);
    CHECK(dump.text.find("ICMP echo request, id 1, seq 3, length 16") != std::string::npos);
    (void)peer0;
    (void)peer1;
}

TEST_CASE("pcap: the recorder forwards errors and counters unchanged and a null writer records nothing") {
    boost::asio::io_context io;
    auto [a, b] = make_memory_link(io.get_executor(), 1500, 1);
    pcap_recorder<memory_endpoint> recorder{std::move(a), nullptr};
    CHECK(recorder.mtu() == 1500);
    CHECK_FALSE(recorder.mac());
    REQUIRE_FALSE(recorder.send(echo_request_frame(1, 1, 8)));
    CHECK(recorder.send(echo_request_frame(1, 2, 8)) == std::errc::no_buffer_space); // the ring holds one
    CHECK(recorder.stats().tx_frames == 1);
    CHECK(recorder.stats().tx_dropped == 1);

    std::vector<std::byte> buffer(max_frame_len(1500));
    REQUIRE_FALSE(b.send(echo_request_frame(1, 3, 8)));
    received r;
    receive_one(recorder, buffer, r);
    io.run();
    CHECK(r.done);
    CHECK(r.size == 50);

    r = {};
    receive_one(recorder, buffer, r);
    recorder.close();
    io.restart();
    io.run();
    CHECK(r.ec == std::errc::operation_canceled);
}

TEST_CASE("pcap: the receive wrapper keeps the handler's associated executor") {
    boost::asio::io_context io;
    auto strand = boost::asio::make_strand(io);
    auto bound = boost::asio::bind_executor(strand, [](std::error_code, std::size_t) {});
    using op_type = ankanet::backend::detail::pcap_receive_op<decltype(bound), std::chrono::system_clock>;
    const op_type op{nullptr, {}, bound};
    CHECK(boost::asio::get_associated_executor(op, io.get_executor()) == strand);
    // And an unbound handler falls back to the candidate, as Asio specifies.
    auto plain = [](std::error_code, std::size_t) {};
    const ankanet::backend::detail::pcap_receive_op<decltype(plain), std::chrono::system_clock> op2{nullptr, {}, plain};
    CHECK(boost::asio::get_associated_executor(op2, io.get_executor()) == io.get_executor());
}

TEST_CASE("pcap: try_receive through a recorder records each frame it delivers, and nothing else") {
    temp_dir dir;
    const fs::path path = dir / "burst.pcap";
    manual_clock clock;
    boost::asio::io_context io;
    auto [guest_end, host_end] = make_memory_link(io.get_executor());
    auto recorder = pcap_recorder<memory_endpoint, manual_clock>::open(std::move(host_end), path, {}, clock);
    REQUIRE(recorder);
    static_assert(burst_backend<pcap_recorder<memory_endpoint, manual_clock>>);

    std::vector<std::byte> buffer(max_frame_len(recorder->mtu()));
    CHECK(recorder->try_receive(buffer).error() == nothing_queued);
    const auto request = arp_frame(who_has, guest_mac, mac_address::broadcast());
    const auto ping = echo_request_frame(7, 1, 56);
    REQUIRE_FALSE(guest_end.send(request));
    REQUIRE_FALSE(guest_end.send(ping));
    REQUIRE_FALSE(guest_end.send(echo_request_frame(7, 2, 1400)));
    clock.set(std::chrono::seconds{1'700'000'000});
    auto first = recorder->try_receive(buffer);
    REQUIRE(first);
    CHECK(*first == request.size());
    clock.set(std::chrono::seconds{1'700'000'001});
    auto second = recorder->try_receive(buffer);
    REQUIRE(second);
    CHECK(*second == ping.size());
    std::vector<std::byte> small(100); // the third frame does not fit: dropped by the link, not recorded
    CHECK(recorder->try_receive(small).error() == errc::buffer_too_small);
    CHECK(recorder->try_receive(buffer).error() == nothing_queued);
    guest_end.close();
    CHECK(recorder->try_receive(buffer).error() == errc::peer_closed);

    const auto writer = recorder->writer();
    CHECK(writer->stats().records == 2);
    REQUIRE_FALSE(writer->flush());
    const auto records = records_of(read_file(path));
    REQUIRE(records.size() == 2);
    CHECK(records[0].seconds == 1'700'000'000);
    CHECK(records[0].data == to_u8(request));
    CHECK(records[1].seconds == 1'700'000'001);
    CHECK(records[1].data == to_u8(ping));
    CHECK(recorder->stats().rx_frames == 2);
}
