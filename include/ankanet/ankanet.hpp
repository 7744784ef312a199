/// @file
/// ankanet — everything the library offers, in one include. Hypervisors usually include only the
/// mode they need (shared.hpp, host.hpp, ...); this header is for tools and quick experiments.
#pragma once

#include <ankanet/bridge.hpp>
#include <ankanet/disconnected.hpp>
#include <ankanet/error.hpp>
#include <ankanet/host.hpp>
#include <ankanet/network.hpp>
#include <ankanet/shared.hpp>
#include <ankanet/version.hpp>
