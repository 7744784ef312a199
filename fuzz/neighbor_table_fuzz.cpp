// Fuzz target for ankanet::gateway::basic_neighbor_table.
//
// The input is a program run against one table. Its first byte picks the subnet (a /24, /30, /31
// or /32; the gateway is the subnet's network address + 1) and the capacity (1 to 8, so full
// tables and stale-entry replacement are reached); the rest are steps, an opcode byte and its
// operands, a missing byte reading as 0:
//
//   op % 8   operands                           what
//   0        eth_src shape smac sip tip [cut]   observe() an ARP frame built from the operands;
//                                               shape: bits 0-1 the operation (0-3), bit 2 an
//                                               802.1Q tag, bit 3 EtherType IPv4 instead of ARP,
//                                               bit 4 cut the frame to `cut` bytes, bit 5 a hardware
//                                               type other than Ethernet, bit 6 pad it to 60 bytes
//   1        len16 bytes                        observe() the next len16 bytes as they are
//   2        ip mac                             claim(ip, mac)
//   3        s                                  the clock moves on by s seconds (lifetime: 60 s)
//   4        ip mac                             the lease on ip is now held by mac
//   5        ip                                 the lease on ip ends
//   6        mac                                forget(mac)
//   7        -                                  nothing (a spacer)
//   ip: % 16, 0-7 the subnet's network address + n (1 is the gateway), 8 the subnet's broadcast
//   address, 9 0.0.0.0, 10 an address outside, 11 255.255.255.255, 12-15 four more input bytes.
//   mac: % 16, 0-7 one of eight unicast MACs (one is the gateway's), 8 broadcast, 9 multicast,
//   10 zero, 11-15 six more input bytes.
//
// Every step is checked against a reference model written from the header's theory of operation
// (an address → (MAC, last seen) map judged by the lease, then by a fresh earlier claim; the
// gateway's address never up for grabs; probes, foreign, network and broadcast addresses ignored;
// at most `capacity` entries, a new claim into a full table replacing a stale entry or refused as
// table_full). Which stale entry the table replaces is its own business: the model finds out by
// probing copies of the table, and requires that exactly one stale entry went. The target traps
// when the observation, the conflict report, size(), lookup() of any address of interest, forget()
// or a counter differs from the model, and on the invariants the brief names: size() ≤ capacity,
// lookup() of the gateway's address never names a guest, and a leased address claimed by its
// holder never resolves to another MAC while that lease lasts.
#include <ankanet/gateway/neighbor_table.hpp>

#include <ankanet/wire/arp.hpp>
#include <ankanet/wire/ethernet.hpp>

#include "support/input_reader.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

namespace {

using namespace ankanet;
using namespace std::chrono_literals;
using fuzz::input_reader;
using gateway::neighbor_observation;
using wire::ipv4_address;
using wire::ipv4_prefix;
using wire::mac_address;

void require(bool condition) {
    if (!condition) __builtin_trap();
}

using table_type = gateway::neighbor_table;
using time_point = table_type::time_point;
constexpr auto lifetime = 60s;

constexpr std::array<mac_address, 8> pool{{
    mac_address{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}}, // the captured guest
    mac_address{{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}},
    mac_address{{0x02, 0x61, 0x6e, 0x6b, 0x61, 0x01}}, // the gateway's own
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x00, 0x0a}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x00, 0x0b}},
    mac_address{{0x52, 0x54, 0x00, 0x00, 0x00, 0x0c}},
    mac_address{{0x00, 0x1c, 0x42, 0xaa, 0xaa, 0xaa}},
    mac_address{{0x3c, 0x22, 0xfb, 0x01, 0x02, 0x03}},
}};
constexpr mac_address gateway_mac = pool[2];
// Selectors 8-10 of read_mac: broadcast, multicast, the zero MAC.
constexpr std::array<mac_address, 3> special_macs{{
    mac_address::broadcast(),
    mac_address{{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}},
    mac_address{},
}};

constexpr std::array<ipv4_prefix, 4> subnets{{
    ipv4_prefix{ipv4_address{192, 168, 64, 0}, 24},
    ipv4_prefix{ipv4_address{192, 168, 64, 0}, 30},
    ipv4_prefix{ipv4_address{192, 168, 64, 0}, 31},
    ipv4_prefix{ipv4_address{192, 168, 64, 1}, 32},
}};

struct model_entry {
    mac_address mac;
    time_point seen;
};

class harness {
public:
    explicit harness(std::uint8_t setup)
        : subnet_(subnets[setup % subnets.size()]),
          gateway_(ipv4_address{subnet_.network().to_u32() + (subnet_.length() == 32 ? 0u : 1u)}),
          capacity_(1 + (setup >> 2) % 8),
          table_(table_type::config{subnet_, gateway_, gateway_mac, lifetime, capacity_}) {}

    void run(input_reader& in) {
        std::size_t steps = 0;
        while (!in.done() && steps++ < 512) {
            switch (in.byte() % 8u) {
            case 0: observe_built(in); break;
            case 1: observe_raw(in); break;
            case 2: {
                const ipv4_address ip = read_ip(in);
                const mac_address mac = read_mac(in);
                check_claim(ip, mac, (ip.to_u32() & 1u) != 0, [&](neighbor_conflict_out* out) {
                    return table_.claim(ip, mac, now_, holder(), out);
                });
                break;
            }
            case 3: now_ += std::chrono::seconds{in.byte()}; break;
            case 4: {
                const ipv4_address ip = read_ip(in);
                const mac_address mac = read_mac(in);
                leases_.insert_or_assign(ip, mac);
                holder_claimed_.erase(ip); // a new lease: its holder has not claimed it yet
                break;
            }
            case 5: {
                const ipv4_address ip = read_ip(in);
                leases_.erase(ip);
                holder_claimed_.erase(ip);
                break;
            }
            case 6: {
                const mac_address mac = read_mac(in);
                const std::size_t expected = std::erase_if(entries_, [&](const auto& item) { return item.second.mac == mac; });
                require(table_.forget(mac) == expected);
                break;
            }
            default: break;
            }
            check_state();
        }
    }

private:
    using neighbor_conflict_out = gateway::neighbor_conflict;

    ipv4_address read_ip(input_reader& in) const {
        const unsigned selector = in.byte() % 16u;
        if (selector < 8) return ipv4_address{subnet_.network().to_u32() + selector};
        switch (selector) {
        case 8: return subnet_.broadcast();
        case 9: return ipv4_address::any();
        case 10: return ipv4_address{10, 0, 0, 5};
        case 11: return ipv4_address::broadcast();
        default: return ipv4_address{in.be32()};
        }
    }

    static mac_address read_mac(input_reader& in) { return in.mac(pool, special_macs, 16); }

    /// The lease holder callable the table is given: the fuzzer's lease map.
    struct lease_lookup {
        const std::map<ipv4_address, mac_address>* leases;
        std::optional<mac_address> operator()(ipv4_address a) const {
            const auto it = leases->find(a);
            return it == leases->end() ? std::nullopt : std::optional{it->second};
        }
    };
    lease_lookup holder() const { return lease_lookup{&leases_}; }

    bool fresh(const model_entry& e) const { return now_ - e.seen < lifetime; }
    bool claimable(ipv4_address a) const {
        if (!subnet_.contains(a)) return false;
        return subnet_.length() >= 31 || (a != subnet_.network() && a != subnet_.broadcast());
    }

    void observe_built(input_reader& in) {
        const mac_address eth_source = read_mac(in);
        const std::uint8_t shape = in.byte();
        const mac_address sender_mac = read_mac(in);
        const ipv4_address sender_ip = read_ip(in);
        const ipv4_address target_ip = read_ip(in);
        const std::size_t cut = (shape & 0x10u) ? in.byte() : 0;

        const bool tagged = (shape & 0x04u) != 0;
        const wire::ethernet::repr eth{eth_source, mac_address::broadcast(),
                                       (shape & 0x08u) ? wire::ethernet::ethertype::ipv4 : wire::ethernet::ethertype::arp,
                                       tagged ? std::optional<std::uint16_t>{0x0064} : std::nullopt};
        std::vector<std::byte> frame(eth.buffer_len() + wire::arp::packet_len);
        require(!eth.emit(frame));
        const wire::arp::repr arp{static_cast<wire::arp::operation>(shape & 0x03u), sender_mac, sender_ip,
                                  mac_address{}, target_ip};
        require(!arp.emit(wire::mutable_bytes{frame}.subspan(eth.buffer_len())));
        if (shape & 0x20u) wire::store_be16(frame, eth.buffer_len() + wire::arp::field::hardware_type, 6); // IEEE 802
        if (shape & 0x40u) frame.resize(std::max(frame.size(), wire::ethernet::min_frame_len));
        if (shape & 0x10u) frame.resize(std::min(frame.size(), cut));
        observe(frame);
    }

    void observe_raw(input_reader& in) { observe(in.frame()); }

    /// observe(): what the frame claims, if anything, per the theory of operation.
    void observe(const std::vector<std::byte>& bytes) {
        const wire::const_bytes frame{bytes};
        const bool with_conflict = !bytes.empty() && (static_cast<unsigned>(bytes.back()) & 1u) != 0;
        const auto eth = wire::ethernet::repr::parse(frame);
        if (!eth || eth->vlan_tci || eth->ethertype != wire::ethernet::ethertype::arp) {
            require(table_.observe(frame, now_, holder()) == neighbor_observation::not_arp);
            return;
        }
        const auto arp = wire::arp::repr::parse(frame.subspan(eth->buffer_len()));
        if (!arp) {
            require(table_.observe(frame, now_, holder()) == neighbor_observation::ignored);
            ++stats_.malformed;
            return;
        }
        check_claim(arp->sender_ip, arp->sender_mac, with_conflict, [&](neighbor_conflict_out* out) {
            return table_.observe(frame, now_, holder(), out);
        });
    }

    /// Runs one claim through the table (`call`) and through the model, and compares.
    template <class Call>
    void check_claim(ipv4_address ip, mac_address mac, bool with_conflict, Call&& call) {
        // A sentinel the table must overwrite on a conflict and leave alone otherwise.
        const gateway::neighbor_conflict sentinel{ipv4_address{1, 2, 3, 4}, pool[7], pool[7], true, true};
        gateway::neighbor_conflict reported = sentinel;
        const neighbor_observation got = call(with_conflict ? &reported : nullptr);

        auto conflict = [&](mac_address holder_mac, bool leased, bool gateway) {
            ++stats_.conflicts;
            require(got == neighbor_observation::conflict);
            if (with_conflict) {
                require(reported.address == ip && reported.holder == holder_mac && reported.claimant == mac);
                require(reported.leased == leased && reported.gateway == gateway);
            }
        };
        if (with_conflict && got != neighbor_observation::conflict) {
            require(reported.address == sentinel.address && reported.holder == sentinel.holder &&
                    reported.claimant == sentinel.claimant && reported.leased && reported.gateway);
        }

        if (!claimable(ip) || !mac.is_unicast()) {
            ++stats_.ignored;
            require(got == neighbor_observation::ignored);
            return;
        }
        if (ip == gateway_) return conflict(gateway_mac, false, true);
        const auto lease = leases_.find(ip);
        const std::optional<mac_address> leased_to =
            lease == leases_.end() ? std::nullopt : std::optional{lease->second};
        if (leased_to && *leased_to != mac) return conflict(*leased_to, true, false);

        const auto it = entries_.find(ip);
        if (it != entries_.end()) {
            if (it->second.mac == mac) {
                ++stats_.refreshed;
                require(got == neighbor_observation::refreshed);
                it->second.seen = now_;
            } else if (!leased_to && fresh(it->second)) {
                return conflict(it->second.mac, false, false);
            } else {
                ++stats_.learned;
                require(got == neighbor_observation::learned);
                it->second = model_entry{mac, now_};
            }
            if (leased_to) holder_claimed_.insert(ip);
            return;
        }
        if (entries_.size() >= capacity_) {
            const bool any_stale = std::any_of(entries_.begin(), entries_.end(), [&](const auto& item) { return !fresh(item.second); });
            if (!any_stale) {
                ++stats_.table_full;
                require(got == neighbor_observation::table_full);
                return;
            }
            require(got == neighbor_observation::learned);
            forget_the_replaced_entry();
        } else {
            require(got == neighbor_observation::learned);
        }
        ++stats_.learned;
        entries_.emplace(ip, model_entry{mac, now_});
        if (leased_to) holder_claimed_.insert(ip);
    }

    /// The table replaced one stale entry of its choice: find which, by asking copies of it
    /// whether each stale entry's holder still has it (a claim by the holder refreshes iff so).
    void forget_the_replaced_entry() {
        std::optional<ipv4_address> gone;
        for (const auto& [ip, e] : entries_) {
            if (fresh(e)) continue;
            table_type probe = table_;
            if (probe.claim(ip, e.mac, now_) == neighbor_observation::refreshed) continue;
            require(!gone); // exactly one went
            gone = ip;
        }
        require(gone.has_value());
        entries_.erase(*gone);
    }

    void check_state() const {
        require(table_.size() == entries_.size());
        require(table_.size() <= capacity_);
        require(!table_.lookup(gateway_, now_));
        const auto& s = table_.stats();
        require(s.learned == stats_.learned && s.refreshed == stats_.refreshed && s.conflicts == stats_.conflicts &&
                s.ignored == stats_.ignored && s.table_full == stats_.table_full && s.malformed == stats_.malformed);
        // lookup() of every address the program can name without raw bytes, and of each entry.
        auto expected = [&](ipv4_address ip) -> std::optional<mac_address> {
            const auto it = entries_.find(ip);
            if (it == entries_.end() || !fresh(it->second)) return std::nullopt;
            return it->second.mac;
        };
        for (std::uint32_t n = 0; n < 8; ++n) {
            const ipv4_address ip{subnet_.network().to_u32() + n};
            require(table_.lookup(ip, now_) == expected(ip));
        }
        for (const auto& [ip, e] : entries_) require(table_.lookup(ip, now_) == expected(ip));
        // A leased address its holder claimed resolves to the holder, or to nobody once stale.
        for (const ipv4_address ip : holder_claimed_) {
            const auto at = table_.lookup(ip, now_);
            require(!at || *at == leases_.at(ip));
        }
    }

    ipv4_prefix subnet_;
    ipv4_address gateway_;
    std::size_t capacity_;
    table_type table_;
    time_point now_{std::chrono::hours{1}};
    std::map<ipv4_address, mac_address> leases_;
    std::set<ipv4_address> holder_claimed_; // leased addresses claimed by their holder since leased
    std::map<ipv4_address, model_entry> entries_;
    gateway::neighbor_counters stats_{};
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    input_reader in{data, size};
    harness h{in.byte()};
    h.run(in);
    return 0;
}
