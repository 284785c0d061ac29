//! Conversions between duet-core's model and WIT-generated types.
//!
//! wit-bindgen (in `core/component`) and wasmtime's `bindgen!` (in the host) generate types with
//! the same names, fields and cases from `wit/core/core.wit`. [`wit_conversions!`] writes the
//! conversions both ways once, for whichever generated module it is pointed at, so the mapping
//! has one home.

/// Converts between a duet-core type and its WIT-generated twin (both directions).
pub trait WitInto<T> {
    /// Converts `self`.
    fn wit_into(self) -> T;
}

impl<A: WitInto<B>, B> WitInto<Vec<B>> for Vec<A> {
    fn wit_into(self) -> Vec<B> {
        self.into_iter().map(WitInto::wit_into).collect()
    }
}

impl<A: WitInto<B>, B> WitInto<Option<B>> for Option<A> {
    fn wit_into(self) -> Option<B> {
        self.map(WitInto::wit_into)
    }
}

macro_rules! identity {
    ($($t:ty),*) => { $(impl WitInto<$t> for $t { fn wit_into(self) -> $t { self } })* };
}
identity!(String, bool, u32, u64);

/// Implements [`WitInto`] both ways between duet-core's model and the types that a bindings
/// generator made for `duet:core/types`, given the generated module's path.
#[macro_export]
macro_rules! wit_conversions {
    ($($module:ident)::+) => {
        const _: () = {
            use $($module)::+ as wit;
            $crate::__wit_record!(wit::Heartbeat { id, kind, target, ok, failures, max_failures, last_success, reason, rtt_us });
            $crate::__wit_record!(wit::Probe { key, label, status, value, counts_toward_led, failures, last_success });
            $crate::__wit_record!(wit::Observations { agent, buddy, started_at, state, mode, configuration, heartbeats, sync, database, nats, rte_count, probes, nics });
            $crate::__wit_record!(wit::Nic { name, up, changed, carries_vip });
            $crate::__wit_record!(wit::Row { key, label, value, reason, failures, last_success, turns_led_red });
            $crate::__wit_record!(wit::Report { agent, generated_at, state, led, rows });
            $crate::__wit_record!(wit::Columns { local, buddy });
            $crate::__wit_record!(wit::RulesConfig { startup_grace_ms, buddy_timeout_ms, vip_enabled });
            $crate::__wit_record!(wit::FailoverConfig { priority, vip_enabled, prepare_timeout_ms, going_online_timeout_ms, going_offline_timeout_ms, min_switch_interval_ms, startup_wait_ms });
            $crate::__wit_record!(wit::BuddyView { name, priority, state, isolated, received_at, was_online, yielding, outside_ok_at });
            $crate::__wit_record!(wit::OperatorCommand { by, command });
            $crate::__wit_record!(wit::Input { agent, started_at, config, heartbeats, sync_up, buddy, command, offline_request, remembered, answer, triggers, vip, nics, fenced, witness });
            $crate::__wit_record!(wit::Witness { reachable, held, free, holder, lease_ms });
            $crate::__wit_record!(wit::MachineState { state, mode, since, last_switch, met_buddy, isolated_since, forced, evidence_failures });
            $crate::__wit_record!(wit::Event { severity, code, message });
            $crate::__wit_record!(wit::Reason { code, text });
            $crate::__wit_record!(wit::Decision { state, actions, reason });
            $crate::__wit_cases!(wit::Led { Green, Red, Transparent });
            $crate::__wit_cases!(wit::FailoverState { Offline, PreparingToGoOnline, GoingOnline, Online, GoingOffline });
            $crate::__wit_cases!(wit::Mode { Automatic, Manual });
            $crate::__wit_cases!(wit::HeartbeatKind { Agent, Ping, Inverted });
            $crate::__wit_cases!(wit::Severity { Info, Warning, Error, Critical });
            $crate::__wit_cases!(wit::Hook { Online, Offline, Fault, VipAcquired, VipReleased });
            $crate::__wit_cases!(wit::ReasonCode { Steady, StartupTieBreak, LostTieBreak, BuddyDead, Isolated, BuddyAlive, Operator, SwitchTrigger, BuddyRequest, BuddyAnswer, Vip, Timeout, PingPongGuard, ManualMode, StartingUp, Fenced, Witness });
            $crate::__wit_cases!(wit::Check { NotConfigured, Ok, Failing(x) });
            $crate::__wit_cases!(wit::BuddyColumn { AsSent, Made(x) });
            $crate::__wit_cases!(wit::Command { Switch, ForceOnline, SetMode(x) });
            $crate::__wit_cases!(wit::RequestReason { Takeover, TieBreak, Handover, Operator });
            $crate::__wit_cases!(wit::Answer { Accepted, Refused(x) });
            $crate::__wit_cases!(wit::VipResult { Acquired, Failed(x), Released });
            $crate::__wit_cases!(wit::Action { AcquireVip, ReleaseVip, AskBuddyOffline(x), HandOver, AnswerBuddy(x), Persist(x), Log(x), Raise(x), RunHook(x) });
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __wit_record {
    ($m:ident :: $name:ident { $($field:ident),* $(,)? }) => {
        impl $crate::wit::WitInto<$crate::$name> for $m::$name {
            fn wit_into(self) -> $crate::$name {
                $crate::$name { $($field: $crate::wit::WitInto::wit_into(self.$field)),* }
            }
        }
        impl $crate::wit::WitInto<$m::$name> for $crate::$name {
            fn wit_into(self) -> $m::$name {
                $m::$name { $($field: $crate::wit::WitInto::wit_into(self.$field)),* }
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __wit_cases {
    ($m:ident :: $name:ident { $($case:ident $(($x:ident))?),* $(,)? }) => {
        impl $crate::wit::WitInto<$crate::$name> for $m::$name {
            fn wit_into(self) -> $crate::$name {
                match self {
                    $($m::$name::$case $(($x))? => $crate::$name::$case $(($crate::wit::WitInto::wit_into($x)))?),*
                }
            }
        }
        impl $crate::wit::WitInto<$m::$name> for $crate::$name {
            fn wit_into(self) -> $m::$name {
                match self {
                    $($crate::$name::$case $(($x))? => $m::$name::$case $(($crate::wit::WitInto::wit_into($x)))?),*
                }
            }
        }
    };
}
