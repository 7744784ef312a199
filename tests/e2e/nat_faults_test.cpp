// End to end: bulk TCP through the NAT over a bad link. An in-process shared network (egress:
// host loopback only, no upstream resolver) whose one VM is a network namespace behind a TAP,
// wrapped in backend::fault_injector, which drops, reorders and duplicates 1% of frames each and
// corrupts 0.1% (one bit: a checksum must catch it). 256 MiB cross through socat, between the
// guest and a server on host 127.0.0.1 reached at the gateway address, and the copy must hash
// like the original:
//  - down (host -> guest) with every frame either way faulted: the translator is the sender
//    (go-back-N on duplicate ACKs and on its RTO, guest segments with a bad checksum dropped),
//    the guest's kernel the receiver;
//  - up (guest -> host) with the frames towards the guest faulted: the guest's kernel is the
//    sender, recovering from lost, late, doubled and damaged ACKs;
//  - up with every frame either way faulted: the translator parks the guest's segments that
//    arrive beyond a lost one and names them in SACK blocks, so that the guest resends the holes
//    alone;
//  - both ways with no faults, through the same in-process network.
//
// Threads: the network, its translators and the backend live on one thread, which runs the
// io_context; the test thread touches them only before that thread starts and after it has been
// joined (stopping them is posted to it).
#include <ankanet/backend/fault_injector.hpp>
#include <ankanet/backend/tap.hpp>
#include <ankanet/nat/egress.hpp>
#include <ankanet/shared.hpp>

#include "../support/temp_dir.hpp" // before nat_hosts.hpp, which uses its read_text
#include "../support/nat_hosts.hpp"
#include "../support/netns.hpp"
#include "../support/skip.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

namespace {

using namespace std::chrono_literals;
using ankanet::backend::fault_config;
using ankanet::backend::fault_injector;
using ankanet::backend::fault_stats;
using ankanet::backend::tap_device;
using ankanet::test::background_process;
using ankanet::test::free_loopback_port;
using ankanet::test::run_command;
using ankanet::test::run_in;
using ankanet::test::scoped_netns;
using ankanet::test::temp_dir;
using ankanet::test::wait_until_succeeds;

using faulty_tap = fault_injector<tap_device>;
using tcp_nat = ankanet::nat::tcp_translator<ankanet::nat::runtime_egress>;

// How much goes each way, in every build: under ASan+UBSan the three cases take about a minute
// (each transfer 4-16 s), against 50 s without.
constexpr int transfer_mib = 256;

// Each transfer is bounded: the guest's side by run_in's limit, the host's by waiting for its
// server to finish. Generous, for slow (sanitized, shared) machines; a normal run takes seconds.
constexpr auto transfer_limit = 240s;

/// The shared network and the thread it runs on; its one VM is `ns`, behind a TAP named eth0.
class network_thread {
public:
    network_thread(const scoped_netns& ns, const fault_config& faults) {
        ankanet::gateway_network_options options;
        std::string why;
        auto egress = ankanet::nat::parse_egress("127.0.0.0/8", &why);
        INFO(why);
        REQUIRE(egress);
        options.egress = std::move(*egress);
        options.dns_upstreams.resolv_conf = "/dev/null"; // nothing reaches a real resolver
        auto made = ankanet::make_shared_network(io_.get_executor(), std::move(options), &why);
        INFO(why);
        REQUIRE(made);
        network_ = std::move(*made);

        // The port's MAC first, so that the TAP (the guest's NIC) is created with it.
        auto port = network_->add_port("vm", ankanet::port_mac::random(), &why);
        INFO(why);
        REQUIRE(port);
        ankanet::backend::tap_options tap;
        tap.mtu = ankanet::backend::default_mtu;
        tap.set_interface_mtu = true;
        tap.mac = *network_->mac(*port);
        auto device = tap_device::open_in_netns(io_.get_executor(), ns.path(), "eth0", tap);
        INFO((device ? std::string{} : device.error().message()));
        REQUIRE(device);
        auto link = faulty_tap::create(std::move(*device), faults);
        REQUIRE(link);
        link_.emplace(*link); // shares the injector's state: its counters, read after the thread is joined
        REQUIRE_FALSE(network_->connect(*port, std::move(*link)));

        thread_ = std::thread{[this] {
            io_.run();
            ran_out_.set_value();
        }};
    }
    network_thread(const network_thread&) = delete;
    network_thread& operator=(const network_thread&) = delete;
    ~network_thread() { (void)stop(); }

    /// Stops the network on its thread and joins it. True when the io_context ran out of work by
    /// itself (every socket and timer closed), false when it had to be stopped.
    bool stop() {
        if (!thread_.joinable()) return stopped_cleanly_;
        boost::asio::post(io_, [this] { network_->stop(); });
        guard_.reset();
        stopped_cleanly_ = ran_out_.get_future().wait_for(10s) == std::future_status::ready;
        if (!stopped_cleanly_) io_.stop();
        thread_.join();
        return stopped_cleanly_;
    }

    // After stop() only: the thread is gone.
    fault_stats final_faults() const { return link_->faults(); }
    ankanet::nat::tcp_translator_stats tcp_stats() const { return network_->service<tcp_nat>().stats(); }

private:
    boost::asio::io_context io_;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{io_.get_executor()};
    std::unique_ptr<ankanet::shared_network> network_;
    std::optional<faulty_tap> link_;
    std::thread thread_;
    std::promise<void> ran_out_;
    bool stopped_cleanly_ = false;
};

/// sha256sum's digest of `path`, or the command's output when it failed.
std::string sha256(const std::filesystem::path& path) {
    const auto hashed = run_command({"sha256sum", path.string()}, 120s);
    if (hashed.status != 0) return "sha256sum failed: " + hashed.output;
    return hashed.output.substr(0, hashed.output.find(' '));
}

/// The guest's address, its route to the gateway, and an answer from the gateway.
void configure_guest(const scoped_netns& ns) {
    const auto up = run_in(ns, "ip link set lo up && ip link set eth0 up && ip addr add 192.168.64.2/24 dev eth0 && "
                               "ip route add default via 192.168.64.1");
    INFO(up.output);
    REQUIRE(up.status == 0);
    // Bounded: ARP and pings go through the faults too, so a few may be lost.
    const auto reached = run_in(ns, "for i in $(seq 20); do ping -c 1 -W 1 192.168.64.1 >/dev/null && exit 0; done; exit 1", 40s);
    INFO(reached.output);
    REQUIRE(reached.status == 0);
}

std::string seconds(std::chrono::steady_clock::duration d) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f s", std::chrono::duration<double>(d).count());
    return text;
}

/// A file of transfer_mib random MiB in `dir`, and its digest.
std::pair<std::filesystem::path, std::string> make_source(const temp_dir& dir) {
    const auto source = dir / "source";
    const auto made = run_command({"sh", "-c", "head -c " + std::to_string(transfer_mib) + "M /dev/urandom > " + source.string()}, 60s);
    INFO(made.output);
    REQUIRE(made.status == 0);
    std::string expected = sha256(source);
    REQUIRE(expected.size() == 64);
    return {source, std::move(expected)};
}

/// Up: the guest's socat sends `source` to a socat on host loopback (at the gateway's address),
/// which writes it, then says it is done; the copy must hash like the source.
void transfer_up(const scoped_netns& guest, const temp_dir& dir, const std::filesystem::path& source,
                 const std::string& expected, const std::string& label) {
    const auto port = std::to_string(free_loopback_port());
    const auto copy = dir / "up";
    const auto finished = dir / "up.status";
    background_process server{"socat -u TCP-LISTEN:" + port + ",bind=127.0.0.1,reuseaddr CREATE:" + copy.string() +
                              "; echo $? > " + finished.string()};
    REQUIRE(wait_until_succeeds("ss -Hltn | grep -q 127.0.0.1:" + port));
    const auto start = std::chrono::steady_clock::now();
    const auto sent = run_in(guest, "socat -u FILE:" + source.string() + " TCP:192.168.64.1:" + port + " 2>&1", transfer_limit);
    INFO(sent.output << "\n--- server ---\n" << server.log());
    REQUIRE(sent.status == 0);
    // The guest's socat is done once its kernel holds the rest: wait for the host's to have it all.
    REQUIRE(wait_until_succeeds("test -s " + finished.string(), transfer_limit));
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(ankanet::test::read_text(finished) == "0\n");
    std::fprintf(stderr, "nat faults (%s): %d MiB up in %s\n", label.c_str(), transfer_mib, seconds(took).c_str());
    CHECK(std::filesystem::file_size(copy) == std::uintmax_t{transfer_mib} << 20);
    CHECK(sha256(copy) == expected);
}

/// Down: a socat on host loopback sends `source` as soon as the guest's socat connects; the
/// guest's writes it, and its copy must hash like the source.
void transfer_down(const scoped_netns& guest, const temp_dir& dir, const std::filesystem::path& source,
                   const std::string& expected, const std::string& label) {
    const auto port = std::to_string(free_loopback_port());
    const auto copy = dir / "down";
    background_process server{"exec socat -u FILE:" + source.string() + " TCP-LISTEN:" + port + ",bind=127.0.0.1,reuseaddr"};
    REQUIRE(wait_until_succeeds("ss -Hltn | grep -q 127.0.0.1:" + port));
    const auto start = std::chrono::steady_clock::now();
    const auto received = run_in(guest, "socat -u TCP:192.168.64.1:" + port + " CREATE:" + copy.string() + " 2>&1", transfer_limit);
    const auto took = std::chrono::steady_clock::now() - start;
    INFO(received.output << "\n--- server ---\n" << server.log());
    REQUIRE(received.status == 0);
    std::fprintf(stderr, "nat faults (%s): %d MiB down in %s\n", label.c_str(), transfer_mib, seconds(took).c_str());
    CHECK(std::filesystem::file_size(copy) == std::uintmax_t{transfer_mib} << 20);
    CHECK(sha256(copy) == expected);
}

std::string describe(const fault_stats& f) {
    const auto one = [](const char* name, const ankanet::backend::fault_counters& c) {
        return std::string{name} + ": " + std::to_string(c.frames) + " frames, " + std::to_string(c.dropped) + " dropped, " +
               std::to_string(c.reordered) + " reordered, " + std::to_string(c.duplicated) + " duplicated, " +
               std::to_string(c.corrupted) + " corrupted";
    };
    return one("from the guest (rx)", f.rx) + "; " + one("to the guest (tx)", f.tx);
}

std::string describe(const ankanet::nat::tcp_translator_stats& s) {
    const auto& e = s.engine;
    return "TCP translator: " + std::to_string(e.connected) + " connected, " + std::to_string(e.flows_closed) + " closed, " +
           std::to_string(e.dup_acks_sent) + " dup ACKs sent, " + std::to_string(e.fast_retransmits) + " fast retransmits, " +
           std::to_string(e.retransmits) + " RTO retransmits, " + std::to_string(e.bad_segments) + " bad segments, " +
           std::to_string(e.rst_to_guest) + " RSTs to the guest, " + std::to_string(e.rst_from_guest) + " RSTs from the guest, " +
           std::to_string(e.segments_parked) + " guest segments parked beyond a hole (" + std::to_string(e.park_refused_vm) +
           " over the VM's budget, " + std::to_string(e.park_refused_pool) + " over the pool's), " +
           std::to_string(e.dup_acks_withheld) + " duplicate ACKs withheld, " + std::to_string(e.short_sends) + " short sends";
}

/// 1% of frames dropped, 1% reordered, 1% duplicated and 0.1% corrupted (one bit flipped, so
/// that a checksum drops it: the guest's kernel towards the guest, the translator towards the host).
ankanet::backend::fault_rates bad_link() {
    ankanet::backend::fault_rates r;
    r.drop = 0.01;
    r.reorder = 0.01;
    r.duplicate = 0.01;
    r.corrupt = 0.001;
    return r;
}

#define ANKANET_REQUIRE_NAT_FAULTS_ENVIRONMENT()                                                                      \
    const auto missing = ankanet::test::missing_netns_requirements();                                                 \
    ANKANET_REQUIRE_ENVIRONMENT(missing.empty(), "nat faults needs " << missing);                                     \
    ANKANET_REQUIRE_ENVIRONMENT(run_command({"socat", "-V"}).status == 0, "nat faults needs socat")

/// What a faulty link must have done in one direction for a test of it to mean something.
void check_faults_happened(const ankanet::backend::fault_counters& c, bool corrupt) {
    // Tens of thousands of frames: 1% of them is hundreds.
    CHECK(c.frames > 10'000);
    CHECK(c.dropped > 10);
    CHECK(c.reordered > 10);
    CHECK(c.duplicated > 10);
    if (corrupt) CHECK(c.corrupted > 0);
}

} // namespace

TEST_CASE("nat faults: host to guest bulk TCP keeps every byte when frames are dropped, reordered, duplicated and corrupted both ways") {
    ANKANET_REQUIRE_NAT_FAULTS_ENVIRONMENT();
    // The translator is the sender (go-back-N on duplicate ACKs and on its RTO), the guest's kernel
    // the receiver; every frame either way may be lost, late, doubled or damaged.
    fault_config faults;
    faults.rx = faults.tx = bad_link();
    faults.seed = 20261207;

    temp_dir dir{"ankanet-nat-faults"};
    const auto [source, expected] = make_source(dir);
    scoped_netns guest;
    network_thread net{guest, faults};
    configure_guest(guest);
    transfer_down(guest, dir, source, expected, "down, faults both ways");

    CHECK(net.stop());
    const auto seen = net.final_faults();
    const auto tcp = net.tcp_stats();
    std::fprintf(stderr, "nat faults (down): %s\n%s\n", describe(seen).c_str(), describe(tcp).c_str());
    INFO(describe(seen) << "\n" << describe(tcp));
    check_faults_happened(seen.rx, true);
    check_faults_happened(seen.tx, true);
    CHECK(tcp.engine.connected == 1);
    CHECK(tcp.engine.flows_closed == 1);
    CHECK(tcp.engine.fast_retransmits > 0);
    CHECK(tcp.engine.bad_segments > 0); // the guest's corrupted ACKs, dropped by checksum
    CHECK(tcp.engine.rst_to_guest == 0);
}

// The guest's kernel as the sender, recovering from lost, late, doubled and damaged ACKs.
TEST_CASE("nat faults: guest to host bulk TCP keeps every byte when the frames towards the guest are dropped, reordered, duplicated and corrupted") {
    ANKANET_REQUIRE_NAT_FAULTS_ENVIRONMENT();
    fault_config faults;
    faults.tx = bad_link();
    faults.seed = 20261208;

    temp_dir dir{"ankanet-nat-faults"};
    const auto [source, expected] = make_source(dir);
    scoped_netns guest;
    network_thread net{guest, faults};
    configure_guest(guest);
    transfer_up(guest, dir, source, expected, "up, faults towards the guest");

    CHECK(net.stop());
    const auto seen = net.final_faults();
    const auto tcp = net.tcp_stats();
    std::fprintf(stderr, "nat faults (up): %s\n%s\n", describe(seen).c_str(), describe(tcp).c_str());
    INFO(describe(seen) << "\n" << describe(tcp));
    CHECK(seen.rx.frames > 10'000);
    check_faults_happened(seen.tx, true);
    CHECK(tcp.engine.connected == 1);
    CHECK(tcp.engine.flows_closed == 1);
    CHECK(tcp.engine.rst_to_guest == 0);
}

// Faults on the guest's data too. The translator parks what arrives beyond a lost segment
// (tcp_reorder_store) and SACKs it, so the guest resends only the holes. Measured on this
// machine: with every segment after a loss dropped (as passt does), the guest's NewReno resent
// its flight one segment per round trip and this transfer took over four minutes; with parking
// but no SACK 34 s (Reno still waits for an RTO after a lost retransmission or a loss at the end
// of a flight); with SACK 4.7 s and 5 RTOs. The guest's counters are printed.
TEST_CASE("nat faults: guest to host bulk TCP keeps every byte when frames are dropped, reordered, duplicated and corrupted both ways") {
    ANKANET_REQUIRE_NAT_FAULTS_ENVIRONMENT();
    fault_config faults;
    faults.rx = faults.tx = bad_link();
    faults.seed = 20261209;

    temp_dir dir{"ankanet-nat-faults"};
    const auto [source, expected] = make_source(dir);
    scoped_netns guest;
    network_thread net{guest, faults};
    configure_guest(guest);
    transfer_up(guest, dir, source, expected, "up, faults both ways");
    const auto guest_counters = run_in(guest, "nstat -az | grep -E 'OutSegs|Retrans|Reno|Timeouts' | grep -v ' 0 '");
    CHECK(net.stop());
    const auto seen = net.final_faults();
    const auto tcp = net.tcp_stats();
    std::fprintf(stderr, "nat faults (up, both ways): %s\n%s\nthe guest's TCP:\n%s", describe(seen).c_str(),
                 describe(tcp).c_str(), guest_counters.output.c_str());
    INFO(describe(seen) << "\n" << describe(tcp));
    check_faults_happened(seen.rx, true);
    check_faults_happened(seen.tx, true);
    CHECK(tcp.engine.flows_closed == 1);
    CHECK(tcp.engine.rst_to_guest == 0);
    CHECK(tcp.engine.segments_parked > 0);
    CHECK(tcp.engine.parked_bytes_taken > 0);
}

TEST_CASE("nat faults: bulk TCP both ways through the in-process network without faults") {
    ANKANET_REQUIRE_NAT_FAULTS_ENVIRONMENT();
    temp_dir dir{"ankanet-nat-plain"};
    const auto [source, expected] = make_source(dir);
    scoped_netns guest;
    network_thread net{guest, fault_config{}}; // rate 0 everywhere: an exact passthrough
    configure_guest(guest);
    transfer_up(guest, dir, source, expected, "no faults");
    transfer_down(guest, dir, source, expected, "no faults");
    CHECK(net.stop());
    const auto seen = net.final_faults();
    CHECK(seen.rx.dropped + seen.rx.reordered + seen.rx.duplicated + seen.rx.corrupted == 0);
    CHECK(seen.tx.dropped + seen.tx.reordered + seen.tx.duplicated + seen.tx.corrupted == 0);
    const auto tcp = net.tcp_stats();
    INFO(describe(tcp));
    CHECK(tcp.engine.connected == 2);
    CHECK(tcp.engine.flows_closed == 2);
    CHECK(tcp.engine.rst_to_guest == 0);
}
