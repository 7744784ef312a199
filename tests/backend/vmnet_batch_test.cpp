// Tests of the portable half of the vmnet backend, against a fake framework that records the
// descriptor arrays it is given and serves reads from a script. Apple's vmnet.framework itself
// (vmnet.hpp) is not exercised here or anywhere in this project's CI.
#include <ankanet/backend/vmnet_batch.hpp>

#include <ankanet/wire/ethernet.hpp>

#include <catch2/catch.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

using namespace ankanet;
using namespace ankanet::backend;
using namespace ankanet::wire;

namespace {

using frame_type = std::vector<std::byte>;

/// Laid out as Apple's struct vmpktdesc.
struct fake_descriptor {
    std::size_t vm_pkt_size;
    ::iovec* vm_pkt_iov;
    std::uint32_t vm_pkt_iovcnt;
    std::uint32_t vm_flags;
};

/// What a write call was given, as the framework saw it.
struct written_packet {
    std::size_t size = 0;
    std::uint32_t iovcnt = 0;
    std::uint32_t flags = 0;
    frame_type bytes;
};

/// The fake framework's world, shared with the test (the policy object moves into the backend).
struct fake_world {
    std::deque<frame_type> inbound;                       ///< frames the "network" has for us
    std::vector<int> read_requests;                       ///< the count each read call asked for
    std::vector<std::size_t> read_buffer_sizes;           ///< vm_pkt_size of the first descriptor each read
    std::vector<std::vector<written_packet>> write_calls; ///< each write call's packets
    std::optional<std::size_t> lie_about_size;            ///< report this vm_pkt_size for the next packet read
    std::optional<int> lie_about_read_count;
    std::optional<int> accept_at_most;                    ///< writes take at most this many packets
    std::error_code read_error;
    std::error_code write_error;
    std::error_code start_error;
    std::function<void()> wake;
    int starts = 0;
    int stops = 0;
};

struct fake_framework {
    using descriptor_type = fake_descriptor;
    std::shared_ptr<fake_world> world;

    std::error_code read(fake_descriptor* packets, int& count) {
        auto& w = *world;
        w.read_requests.push_back(count);
        w.read_buffer_sizes.push_back(count > 0 ? packets[0].vm_pkt_size : 0);
        if (w.read_error) {
            count = 0;
            return w.read_error;
        }
        int n = 0;
        while (n < count && !w.inbound.empty()) {
            auto& d = packets[n];
            REQUIRE(d.vm_pkt_iovcnt == 1);
            REQUIRE(d.vm_flags == 0);
            const auto& frame = w.inbound.front();
            // Scatter into the iovecs as vmnet would, never past what they offer.
            std::size_t copied = 0;
            for (std::uint32_t i = 0; i < d.vm_pkt_iovcnt && copied < frame.size(); ++i) {
                const std::size_t chunk = std::min(frame.size() - copied, d.vm_pkt_iov[i].iov_len);
                std::memcpy(d.vm_pkt_iov[i].iov_base, frame.data() + copied, chunk);
                copied += chunk;
            }
            d.vm_pkt_size = copied;
            if (w.lie_about_size) {
                d.vm_pkt_size = *w.lie_about_size;
                w.lie_about_size.reset();
            }
            w.inbound.pop_front();
            ++n;
        }
        count = n;
        if (w.lie_about_read_count) {
            count = *w.lie_about_read_count;
            w.lie_about_read_count.reset();
        }
        return {};
    }

    std::error_code write(fake_descriptor* packets, int& count) {
        auto& w = *world;
        std::vector<written_packet> call;
        for (int i = 0; i < count; ++i) {
            const auto& d = packets[i];
            written_packet p{d.vm_pkt_size, d.vm_pkt_iovcnt, d.vm_flags, {}};
            for (std::uint32_t j = 0; j < d.vm_pkt_iovcnt; ++j) {
                const auto* base = static_cast<const std::byte*>(d.vm_pkt_iov[j].iov_base);
                p.bytes.insert(p.bytes.end(), base, base + d.vm_pkt_iov[j].iov_len);
            }
            call.push_back(std::move(p));
        }
        w.write_calls.push_back(std::move(call));
        if (w.write_error) {
            count = 0;
            return w.write_error;
        }
        if (w.accept_at_most && *w.accept_at_most < count) count = *w.accept_at_most;
        return {};
    }

    std::error_code start_events(std::function<void()> wake) {
        if (world->start_error) return world->start_error;
        ++world->starts;
        world->wake = std::move(wake);
        return {};
    }
    void stop_events() noexcept {
        ++world->stops;
        world->wake = nullptr;
    }
};

static_assert(vmnet_framework<fake_framework>);
using backend_type = basic_vmnet_backend<fake_framework>;
static_assert(frame_backend<backend_type>);

const vmnet_parameters standard{*mac_address::parse("6e:4d:05:e1:2f:8b"), 1500, 1514};

frame_type numbered_frame(std::uint32_t sequence, std::size_t size = 60) {
    frame_type frame(size);
    REQUIRE_FALSE(ethernet::repr{standard.mac, mac_address::broadcast(), 0x88b5, {}}.emit(frame));
    store_be32(frame, ethernet::header_len, sequence);
    for (std::size_t i = ethernet::header_len + 4; i < size; ++i) frame[i] = std::byte(i & 0xff);
    return frame;
}

struct fixture {
    boost::asio::io_context io;
    std::shared_ptr<fake_world> world = std::make_shared<fake_world>();

    backend_type make(vmnet_batch_options options = {}, vmnet_parameters parameters = standard) {
        auto backend = backend_type::create(io.get_executor(), fake_framework{world}, parameters, options);
        REQUIRE(backend);
        return std::move(*backend);
    }
    void drain() {
        io.restart();
        io.poll();
    }
};

struct received {
    std::error_code ec;
    frame_type bytes;
    bool done = false;
};

void receive_one(backend_type& backend, frame_type& buffer, received& out) {
    out = {};
    backend.async_receive(buffer, [&buffer, &out](std::error_code ec, std::size_t n) {
        out.ec = ec;
        out.bytes.assign(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
        out.done = true;
    });
}

} // namespace

// --- parameters -------------------------------------------------------------------------------

TEST_CASE("vmnet: MAC text as vmnet prints it, leading zeros or not") {
    CHECK(*parse_vmnet_mac("6e:4d:5:e1:2f:8b") == *mac_address::parse("6e:4d:05:e1:2f:8b"));
    CHECK(*parse_vmnet_mac("6e:4d:05:e1:2f:8b") == *mac_address::parse("6e:4d:05:e1:2f:8b"));
    CHECK(*parse_vmnet_mac("0:0:0:0:0:1") == mac_address{{0, 0, 0, 0, 0, 1}});
    CHECK(*parse_vmnet_mac("A2:B3:C4:D5:E6:F7") == mac_address{{0xa2, 0xb3, 0xc4, 0xd5, 0xe6, 0xf7}});
    for (const char* bad : {"", "6e:4d:5:e1:2f", "6e:4d:5:e1:2f:8b:00", "6e:4d:5:e1:2f:", ":6e:4d:5:e1:2f:8b",
                            "6e:4d:005:e1:2f:8b", "6e:4d::e1:2f:8b", "6e-4d-05-e1-2f-8b", "6g:4d:05:e1:2f:8b",
                            " 6e:4d:05:e1:2f:8b", "6e:4d:05:e1:2f:8b ", "6e:4d:05:e1:2f:8b\n"}) {
        INFO(bad);
        CHECK(parse_vmnet_mac(bad).error() == errc::bad_address_text);
    }
}

TEST_CASE("vmnet: start parameters map to the backend's MTU and are validated") {
    const auto p = map_vmnet_parameters("6e:4d:5:e1:2f:8b", 1500, 1514);
    REQUIRE(p);
    CHECK(p->mac == *mac_address::parse("6e:4d:05:e1:2f:8b"));
    CHECK(p->mtu == 1500);
    CHECK(p->max_packet_size == 1514);
    CHECK(map_vmnet_parameters("6e:4d:5:e1:2f:8b", 9000, 9018)->mtu == 9000);

    CHECK(map_vmnet_parameters("not a mac", 1500, 1514).error() == errc::bad_address_text);
    CHECK(map_vmnet_parameters("ff:ff:ff:ff:ff:ff", 1500, 1514).error() == errc::bad_field); // not unicast
    CHECK(map_vmnet_parameters("0:0:0:0:0:0", 1500, 1514).error() == errc::bad_field);
    CHECK(map_vmnet_parameters("6e:4d:5:e1:2f:8b", min_mtu - 1, 1514).error() == errc::bad_field);
    CHECK(map_vmnet_parameters("6e:4d:5:e1:2f:8b", max_mtu + 1, max_mtu + 100).error() == errc::bad_field);
    CHECK(map_vmnet_parameters("6e:4d:5:e1:2f:8b", 1500, 1513).error() == errc::bad_field); // a full frame would not fit
    CHECK(map_vmnet_parameters("6e:4d:5:e1:2f:8b", 1500, max_frame_len(max_mtu) + 1).error() == errc::bad_field);
    CHECK(map_vmnet_parameters("6e:4d:5:e1:2f:8b", 1500, std::uint64_t{1} << 40).error() == errc::bad_field);
}

TEST_CASE("vmnet: vmnet_return_t failures have their own category and messages") {
    const std::error_code ec = vmnet_errc::invalid_access;
    CHECK(std::string(ec.category().name()) == "vmnet");
    CHECK(ec.message().find("entitlement") != std::string::npos);
    CHECK(std::error_code(vmnet_errc::buffer_exhausted) != std::error_code(vmnet_errc::failure));
    CHECK(make_error_code(vmnet_errc::unknown).message() == "vmnet: unknown status");
}

// --- batches ----------------------------------------------------------------------------------

TEST_CASE("vmnet: the tx batch packs frames and describes each with one iovec") {
    vmnet_tx_batch<fake_descriptor> batch(4, 1514);
    const auto a = numbered_frame(1, 60);
    const auto b = numbered_frame(2, 1514);
    batch.push(a);
    batch.push(b);
    CHECK(batch.size() == 2);
    CHECK(batch.bytes() == 1574);
    const fake_descriptor* d = batch.describe();
    CHECK(d[0].vm_pkt_size == 60);
    CHECK(d[0].vm_pkt_iovcnt == 1);
    CHECK(d[0].vm_flags == 0);
    CHECK(d[0].vm_pkt_iov->iov_len == 60);
    CHECK(std::memcmp(d[0].vm_pkt_iov->iov_base, a.data(), a.size()) == 0);
    CHECK(d[1].vm_pkt_size == 1514);
    CHECK(std::memcmp(d[1].vm_pkt_iov->iov_base, b.data(), b.size()) == 0);
    CHECK(batch.bytes_of_first(1) == 60);
    CHECK(batch.fits(1514));
    batch.clear();
    CHECK(batch.empty());

    // Jumbo frames: the buffer is bounded by the per-call limit, not by capacity * frame size.
    vmnet_tx_batch<fake_descriptor> jumbo(64, 65014);
    for (int i = 0; i < 4; ++i) {
        REQUIRE(jumbo.fits(65014));
        jumbo.push(numbered_frame(0, 65014));
    }
    CHECK_FALSE(jumbo.fits(65014));
    CHECK(jumbo.fits(vmnet_max_bytes_per_call - 4 * 65014));
}

TEST_CASE("vmnet: the rx batch honours vm_pkt_size and refuses sizes beyond its buffers") {
    vmnet_rx_batch<fake_descriptor> batch(8, 1514);
    REQUIRE(batch.capacity() == 8);
    fake_descriptor* d = batch.prepare();
    for (std::size_t i = 0; i < 8; ++i) {
        CHECK(d[i].vm_pkt_size == 1514); // each buffer offered whole, as vmnet_read asks
        CHECK(d[i].vm_pkt_iov->iov_len == 1514);
        CHECK(d[i].vm_pkt_iovcnt == 1);
    }
    std::memset(d[0].vm_pkt_iov->iov_base, 0xaa, 1514);
    std::memset(d[1].vm_pkt_iov->iov_base, 0xbb, 1514);
    d[0].vm_pkt_size = 64;
    d[1].vm_pkt_size = 1515; // a lie: more than the buffer holds
    d[2].vm_pkt_size = 1514;
    d[2].vm_pkt_iov = nullptr; // and a moved pointer, which is never followed
    REQUIRE(batch.complete(3));
    CHECK(batch.remaining() == 3);

    auto first = batch.next();
    REQUIRE(first);
    CHECK_FALSE(first->error);
    CHECK(first->frame.size() == 64);
    CHECK(first->frame[63] == std::byte{0xaa});
    auto second = batch.next();
    REQUIRE(second);
    CHECK(second->error == errc::bad_length);
    auto third = batch.next();
    REQUIRE(third);
    CHECK(third->frame.size() == 1514);
    CHECK_FALSE(batch.next());

    batch.prepare();
    CHECK_FALSE(batch.complete(9)); // more than were offered
    CHECK_FALSE(batch.complete(-1));
    CHECK_FALSE(batch.next());
}

TEST_CASE("vmnet: read buffers stay within vmnet's 256 KiB per call") {
    CHECK(vmnet_rx_batch<fake_descriptor>(200, 1514).capacity() == 173);
    CHECK(vmnet_rx_batch<fake_descriptor>(64, 1514).capacity() == 64);
    CHECK(vmnet_rx_batch<fake_descriptor>(64, 65535).capacity() == 4);
    CHECK(vmnet_rx_batch<fake_descriptor>(64, 300 * 1024).capacity() == 1); // never zero
}

// --- the backend: transmit --------------------------------------------------------------------

TEST_CASE("vmnet: sends in one turn of the event loop go out in one write call") {
    fixture f;
    auto backend = f.make();
    CHECK(f.world->starts == 1);
    std::vector<frame_type> frames;
    for (std::uint32_t i = 0; i < 10; ++i) frames.push_back(numbered_frame(i, 60 + i));
    for (const auto& frame : frames) REQUIRE_FALSE(backend.send(frame));
    CHECK(f.world->write_calls.empty()); // queued, flush posted
    f.drain();
    REQUIRE(f.world->write_calls.size() == 1);
    const auto& call = f.world->write_calls[0];
    REQUIRE(call.size() == 10);
    for (std::size_t i = 0; i < 10; ++i) {
        CHECK(call[i].size == frames[i].size());
        CHECK(call[i].iovcnt == 1);
        CHECK(call[i].flags == 0);
        CHECK(call[i].bytes == frames[i]);
    }
    CHECK(backend.stats().tx_frames == 10);
    CHECK(backend.stats().tx_bytes == 10 * 60 + 45);
    CHECK(backend.batch_stats().writes == 1);
}

TEST_CASE("vmnet: a full batch is written at once, the rest at the posted flush") {
    fixture f;
    auto backend = f.make({4});
    for (std::uint32_t i = 0; i < 10; ++i) REQUIRE_FALSE(backend.send(numbered_frame(i)));
    REQUIRE(f.world->write_calls.size() == 2); // 4 + 4, inline
    f.drain();
    REQUIRE(f.world->write_calls.size() == 3);
    CHECK(f.world->write_calls[0].size() == 4);
    CHECK(f.world->write_calls[1].size() == 4);
    CHECK(f.world->write_calls[2].size() == 2);
    std::uint32_t expected = 0;
    for (const auto& call : f.world->write_calls) {
        for (const auto& packet : call) CHECK(load_be32(packet.bytes, ethernet::header_len) == expected++);
    }
    CHECK(backend.stats().tx_frames == 10);
}

TEST_CASE("vmnet: packets vmnet does not take are dropped and counted, not retried") {
    fixture f;
    auto backend = f.make({8});
    f.world->accept_at_most = 3;
    for (std::uint32_t i = 0; i < 5; ++i) REQUIRE_FALSE(backend.send(numbered_frame(i)));
    f.drain();
    CHECK(backend.stats().tx_frames == 3);
    CHECK(backend.stats().tx_dropped == 2);
    CHECK(backend.stats().tx_bytes == 3 * 60);

    f.world->accept_at_most.reset();
    f.world->write_error = vmnet_errc::buffer_exhausted;
    for (std::uint32_t i = 0; i < 4; ++i) REQUIRE_FALSE(backend.send(numbered_frame(i)));
    f.drain();
    CHECK(backend.stats().tx_dropped == 2 + 4);
    CHECK(backend.batch_stats().write_errors == 1);

    f.world->write_error = {};
    REQUIRE_FALSE(backend.send(numbered_frame(9)));
    f.drain();
    CHECK(f.world->write_calls.back().size() == 1); // nothing left over from the failed call
    CHECK(backend.stats().tx_frames == 4);
}

TEST_CASE("vmnet: send refuses frames of a bad size, including over vmnet's max packet size") {
    fixture f;
    auto backend = f.make();
    CHECK(backend.send(frame_type(13)) == errc::truncated);
    CHECK(backend.send(frame_type(1515)) == errc::bad_length); // fits the MTU with a VLAN tag, not vmnet
    CHECK(backend.send(frame_type(max_frame_len(1500) + 1)) == errc::bad_length);
    CHECK(backend.stats().tx_invalid == 3);
    f.drain();
    CHECK(f.world->write_calls.empty());
}

TEST_CASE("vmnet: a batch stays within 256 KiB per write") {
    fixture f;
    const vmnet_parameters jumbo{standard.mac, 65000, 65014};
    auto backend = f.make({64}, jumbo);
    for (std::uint32_t i = 0; i < 6; ++i) REQUIRE_FALSE(backend.send(numbered_frame(i, 65014)));
    f.drain();
    REQUIRE(f.world->write_calls.size() == 2);
    for (const auto& call : f.world->write_calls) {
        std::size_t bytes = 0;
        for (const auto& packet : call) bytes += packet.size;
        CHECK(bytes <= vmnet_max_bytes_per_call);
    }
    CHECK(backend.stats().tx_frames == 6);
}

// --- the backend: receive ---------------------------------------------------------------------

TEST_CASE("vmnet: a wake from another thread completes a waiting receive, one frame per receive") {
    fixture f;
    auto backend = f.make();
    frame_type buffer(max_frame_len(backend.mtu()));
    received r;
    receive_one(backend, buffer, r);
    CHECK(f.world->read_requests.size() == 1); // tried at once, found nothing
    f.drain();
    CHECK_FALSE(r.done);

    f.world->inbound = {numbered_frame(0, 60), numbered_frame(1, 1514), numbered_frame(2, 98)};
    std::thread framework_queue([wake = f.world->wake] { wake(); }); // as vmnet's dispatch queue would
    framework_queue.join();
    f.drain();
    REQUIRE(r.done);
    CHECK_FALSE(r.ec);
    CHECK(r.bytes == numbered_frame(0, 60));
    CHECK(f.world->read_requests.size() == 2);
    CHECK(f.world->read_requests[1] == 64);          // the whole batch asked for
    CHECK(f.world->read_buffer_sizes[1] == 1514);    // each buffer max_packet_size long

    // The other two come from the same read, at their own sizes.
    receive_one(backend, buffer, r);
    f.drain();
    CHECK(r.bytes == numbered_frame(1, 1514));
    receive_one(backend, buffer, r);
    f.drain();
    CHECK(r.bytes == numbered_frame(2, 98));
    CHECK(f.world->read_requests.size() == 2);
    CHECK(backend.stats().rx_frames == 3);
    CHECK(backend.stats().rx_bytes == 60 + 1514 + 98);
    CHECK(backend.batch_stats().read_packets == 3);
    CHECK(backend.batch_stats().wakeups == 1);
}

TEST_CASE("vmnet: a receive reads before it waits, so no wake is needed for queued packets") {
    fixture f;
    auto backend = f.make();
    f.world->inbound = {numbered_frame(5)};
    frame_type buffer(max_frame_len(backend.mtu()));
    received r;
    receive_one(backend, buffer, r);
    CHECK_FALSE(r.done); // completions are posted, never inline
    f.drain();
    REQUIRE(r.done);
    CHECK(r.bytes == numbered_frame(5));
    CHECK(backend.batch_stats().wakeups == 0);
}

TEST_CASE("vmnet: lying sizes, runts and oversize frames are counted and skipped") {
    fixture f;
    auto backend = f.make();
    f.world->inbound = {numbered_frame(0), numbered_frame(1), frame_type(10), numbered_frame(3)};
    f.world->lie_about_size = 1515; // the first packet claims more than its 1514-byte buffer
    frame_type buffer(max_frame_len(backend.mtu()));
    received r;
    receive_one(backend, buffer, r);
    f.drain();
    REQUIRE(r.done);
    CHECK(r.bytes == numbered_frame(1));
    receive_one(backend, buffer, r);
    f.drain();
    CHECK(r.bytes == numbered_frame(3));
    CHECK(backend.stats().rx_oversize == 1);
    CHECK(backend.stats().rx_runt == 1);
    CHECK(backend.stats().rx_frames == 2);

    // A frame that fits vmnet's buffer but not the MTU (jumbo max packet size, small MTU).
    fixture g;
    auto small_mtu = g.make({}, vmnet_parameters{standard.mac, 1500, 9014});
    g.world->inbound = {numbered_frame(7, 9000), numbered_frame(8)};
    received s;
    receive_one(small_mtu, buffer, s);
    g.drain();
    CHECK(s.bytes == numbered_frame(8));
    CHECK(small_mtu.stats().rx_oversize == 1);
}

TEST_CASE("vmnet: a read count out of range is clamped and counted") {
    fixture f;
    auto backend = f.make({4});
    f.world->inbound = {numbered_frame(0)};
    f.world->lie_about_read_count = 5; // more than the 4 descriptors offered
    frame_type buffer(max_frame_len(backend.mtu()));
    received r;
    receive_one(backend, buffer, r);
    f.drain();
    CHECK_FALSE(r.done); // the batch was discarded; nothing more to read
    CHECK(backend.batch_stats().bad_counts == 1);
    f.world->inbound = {numbered_frame(1)};
    f.world->wake();
    f.drain();
    REQUIRE(r.done);
    CHECK(r.bytes == numbered_frame(1));
}

TEST_CASE("vmnet: a read error completes the receive with the vmnet error") {
    fixture f;
    auto backend = f.make();
    f.world->read_error = vmnet_errc::failure;
    frame_type buffer(max_frame_len(backend.mtu()));
    received r;
    receive_one(backend, buffer, r);
    f.drain();
    REQUIRE(r.done);
    CHECK(r.ec == vmnet_errc::failure);
    CHECK(backend.batch_stats().read_errors == 1);
}

TEST_CASE("vmnet: a frame longer than the receive buffer is dropped with buffer_too_small") {
    fixture f;
    auto backend = f.make();
    f.world->inbound = {numbered_frame(0, 200), numbered_frame(1, 60)};
    frame_type small(100);
    received r;
    receive_one(backend, small, r);
    f.drain();
    CHECK(r.ec == errc::buffer_too_small);
    receive_one(backend, small, r);
    f.drain();
    CHECK(r.bytes == numbered_frame(1, 60));
}

TEST_CASE("vmnet: a burst of wakes costs one post") {
    fixture f;
    auto backend = f.make();
    std::thread framework_queue([wake = f.world->wake] {
        for (int i = 0; i < 1000; ++i) wake();
    });
    framework_queue.join();
    f.io.restart();
    CHECK(f.io.poll() == 1);
    CHECK(backend.batch_stats().wakeups == 1);
}

TEST_CASE("vmnet: a flood of refused frames yields to the executor instead of looping") {
    fixture f;
    auto backend = f.make({2});
    for (int i = 0; i < 20; ++i) f.world->inbound.push_back(frame_type(10)); // runts, 10 reads' worth
    f.world->inbound.push_back(numbered_frame(1));
    frame_type buffer(max_frame_len(backend.mtu()));
    received r;
    receive_one(backend, buffer, r);
    CHECK(f.world->read_requests.size() == 4); // bounded per call, the rest continues posted
    f.drain();
    REQUIRE(r.done);
    CHECK(r.bytes == numbered_frame(1));
    CHECK(backend.stats().rx_runt == 20);
}

TEST_CASE("vmnet: the receive completes on the handler's associated executor") {
    fixture f;
    auto backend = f.make();
    f.world->inbound = {numbered_frame(0)};
    auto strand = boost::asio::make_strand(f.io);
    frame_type buffer(max_frame_len(backend.mtu()));
    bool on_strand = false;
    backend.async_receive(buffer, boost::asio::bind_executor(strand, [&](std::error_code ec, std::size_t n) {
                              CHECK_FALSE(ec);
                              CHECK(n == 60);
                              on_strand = strand.running_in_this_thread();
                          }));
    f.drain();
    CHECK(on_strand);
}

// --- the backend: lifetime --------------------------------------------------------------------

TEST_CASE("vmnet: close stops events, aborts the receive, writes what was queued") {
    fixture f;
    auto backend = f.make();
    frame_type buffer(max_frame_len(backend.mtu()));
    received r;
    receive_one(backend, buffer, r);
    REQUIRE_FALSE(backend.send(numbered_frame(1)));
    backend.close();
    CHECK(f.world->stops == 1);
    CHECK_FALSE(f.world->wake);
    REQUIRE(f.world->write_calls.size() == 1);
    f.drain();
    REQUIRE(r.done);
    CHECK(r.ec == std::errc::operation_canceled);

    CHECK(backend.send(numbered_frame(2)) == std::errc::not_connected);
    CHECK(backend.stats().tx_dropped == 1);
    receive_one(backend, buffer, r);
    f.drain();
    CHECK(r.ec == std::errc::operation_canceled);
    backend.close(); // idempotent
    CHECK(f.world->stops == 1);
}

TEST_CASE("vmnet: destroying the backend with work posted is safe and stops events") {
    fixture f;
    std::function<void()> wake;
    {
        auto backend = f.make();
        wake = f.world->wake;
        REQUIRE_FALSE(backend.send(numbered_frame(1))); // a flush is posted
        wake();                                           // and a wake
    }
    CHECK(f.world->stops == 1);
    CHECK(f.world->write_calls.size() == 1); // the queued frame went out at destruction
    f.drain();                               // the posted work finds the backend gone
    CHECK(f.world->write_calls.size() == 1);
}

TEST_CASE("vmnet: create refuses bad options and passes start_events errors on") {
    fixture f;
    CHECK(backend_type::create(f.io.get_executor(), fake_framework{f.world}, standard, {0}).error() ==
          std::errc::invalid_argument);
    CHECK(backend_type::create(f.io.get_executor(), fake_framework{f.world}, standard, {201}).error() ==
          std::errc::invalid_argument);
    CHECK(backend_type::create(f.io.get_executor(), fake_framework{f.world}, vmnet_parameters{standard.mac, 100, 1514}).error() ==
          std::errc::invalid_argument);
    CHECK(backend_type::create(f.io.get_executor(), fake_framework{f.world}, vmnet_parameters{standard.mac, 1500, 0}).error() ==
          std::errc::invalid_argument);
    f.world->start_error = vmnet_errc::invalid_access;
    CHECK(backend_type::create(f.io.get_executor(), fake_framework{f.world}, standard).error() == vmnet_errc::invalid_access);
    CHECK(f.world->stops == 0); // never started, so never stopped

    f.world->start_error = {};
    auto backend = f.make();
    CHECK(backend.mac() == standard.mac);
    CHECK(backend.mtu() == 1500);
    CHECK(backend.parameters() == standard);
}
