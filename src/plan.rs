// SPDX-License-Identifier: MIT OR Apache-2.0
//! From what the SYSTEM hive says ([`SystemInfo`]) to the registry edits that make the image
//! boot from iSCSI ([`Plan`]), following shared/docs/iscsi-prep.md.
//!
//! Planning only reads the hive. The plan is idempotent: a value that already has the wanted
//! data produces no change, so planning a prepared hive gives an empty plan ("ready").

use std::collections::BTreeSet;

use anyhow::{bail, Result};
use hivetool::hive::reg_type;
use hivetool::{Data, Hive};
use serde::Serialize;

use crate::windows::{
    self, filter_guid_of, key_under, ns2_filter_guids, ControlSet, Nic, SystemInfo, NET_CLASS,
    WFP_LWF,
};

/// The optional hardening edits (off by default, one flag each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Hardening {
    /// Empty `Memory Management\PagingFiles` (a pagefile on the iSCSI disk crashes Windows 10
    /// on first boot).
    pub no_pagefile: bool,
    /// `Tcpip\Parameters\DisableDhcpMediaSense` = 1.
    pub disable_dhcp_media_sense: bool,
    /// `CrashControl\AutoReboot` = 0 (keeps a 0x7B on screen).
    pub no_auto_reboot: bool,
    /// `Power\HibernateEnabled` = 0 and `Session Manager\Power\HiberbootEnabled` = 0.
    pub no_hibernate: bool,
    /// `Control\BootDriverFlags` |= 1 (network-boot drivers load even without an iBFT).
    pub boot_driver_flags: bool,
}

/// What to prepare.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// NIC selectors: class subkey (`0007`), NetCfgInstanceId (`{GUID}`) or MAC address. Empty
    /// = every boot candidate.
    pub nics: Vec<String>,
    /// Control sets to edit (`ControlSet001` or `1`). Empty = those named by Select.
    pub control_sets: Vec<String>,
    /// Extra filter GUIDs to remove besides the WFP LWF.
    pub extra_filters: Vec<String>,
    /// Make the NIC service(s), iScsiPrt, NDIS and Tcpip boot-start (default true).
    pub boot_start: bool,
    /// Optional hardening.
    pub hardening: Hardening,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nics: Vec::new(),
            control_sets: Vec::new(),
            extra_filters: Vec::new(),
            boot_start: true,
            hardening: Hardening::default(),
        }
    }
}

/// One registry operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RegOp {
    /// Set a value (creating the key first when `create_key`).
    SetValue {
        /// Key path from the hive root.
        key: String,
        /// Value name.
        name: String,
        /// REG_* type.
        ty: u32,
        /// New data.
        #[serde(skip)]
        data: Vec<u8>,
        /// Create the key if it is missing.
        create_key: bool,
    },
    /// Delete a value.
    DeleteValue {
        /// Key path from the hive root.
        key: String,
        /// Value name.
        name: String,
    },
    /// Delete a key and everything below it.
    DeleteKey {
        /// Key path from the hive root.
        key: String,
    },
}

/// A planned change, with what it replaces, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The operation.
    #[serde(flatten)]
    pub op: RegOp,
    /// Registry path shown to people (`HKLM\SYSTEM\ControlSet001\...\Linkage\FilterList`).
    pub path: String,
    /// The old value, shown (`<absent>` when missing).
    pub old: String,
    /// The new value, shown (`<deleted>` for a key deletion).
    pub new: String,
    /// Why.
    pub reason: String,
}

/// What stops the image from booting and cannot be fixed by the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockerKind {
    /// No boot NIC qualifies (or none matches the selectors).
    NoBootNic,
    /// `Services\iScsiPrt` is missing.
    NoIscsiPrt,
    /// NDIS, Tcpip or a NIC's miniport service is missing.
    MissingService,
    /// A mandatory filter that cannot load at boot stays on a boot NIC.
    BlockingFilter,
}

/// A blocker with its message.
#[derive(Debug, Clone, Serialize)]
pub struct Blocker {
    /// Kind.
    pub kind: BlockerKind,
    /// Control set, if specific to one.
    pub control_set: Option<String>,
    /// Message saying what and what to do.
    pub message: String,
}

/// A selected boot NIC.
#[derive(Debug, Clone, Serialize)]
pub struct SelectedNic {
    /// Control set.
    pub control_set: String,
    /// Class subkey.
    pub subkey: String,
    /// `DriverDesc`.
    pub description: String,
    /// `NetCfgInstanceId`.
    pub net_cfg_instance_id: String,
    /// Miniport service.
    pub service: String,
}

/// The plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Registry changes in the order they are applied.
    pub changes: Vec<Change>,
    /// What cannot be fixed here.
    pub blockers: Vec<Blocker>,
    /// Notes for people (filters that were boot-loadable anyway, other control sets ...).
    pub notes: Vec<String>,
    /// The NICs treated as boot NICs.
    pub nics: Vec<SelectedNic>,
    /// The control sets edited.
    pub control_sets: Vec<String>,
}

impl Plan {
    /// Nothing to change and nothing blocking.
    pub fn is_ready(&self) -> bool {
        self.changes.is_empty() && self.blockers.is_empty()
    }
}

/// Shows value data compactly for reports.
pub fn show(data: Option<&Data>) -> String {
    match data {
        None => "<absent>".to_string(),
        Some(Data::Dword(v)) | Some(Data::DwordBe(v)) => format!("{v:#x} ({v})"),
        Some(Data::Qword(v)) => format!("{v:#x}"),
        Some(Data::Sz(s)) | Some(Data::ExpandSz(s)) | Some(Data::Link(s)) => format!("{s:?}"),
        Some(Data::MultiSz(v)) => format!("{v:?}"),
        Some(Data::Binary(b))
        | Some(Data::None(b))
        | Some(Data::Raw(_, b))
        | Some(Data::Resource(_, b)) => hex(b),
    }
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "(empty)".into();
    }
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn norm_guid(s: &str) -> String {
    s.trim().trim_matches(['{', '}']).to_ascii_uppercase()
}

/// Plans the preparation of `hive` (a SYSTEM hive).
pub fn plan(hive: &Hive<'_>, opts: &Options) -> Result<Plan> {
    let info = if opts.control_sets.is_empty() {
        windows::read_system(hive)?
    } else {
        let mut info = windows::read_system(hive)?;
        let mut sets = Vec::new();
        for cs in &opts.control_sets {
            let name = match cs.parse::<u32>() {
                Ok(n) => format!("ControlSet{n:03}"),
                Err(_) => cs.clone(),
            };
            let set = windows::read_control_set(hive, &name, vec!["requested".into()])?;
            // The same set named twice (`1` and `ControlSet001`) is edited once.
            if !sets
                .iter()
                .any(|s: &ControlSet| s.name.eq_ignore_ascii_case(&set.name))
            {
                sets.push(set);
            }
        }
        info.control_sets = sets;
        info
    };
    plan_info(hive, &info, opts)
}

fn nic_matches(nic: &Nic, sel: &str) -> bool {
    let s = sel.trim();
    if s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()) {
        return nic.subkey == s;
    }
    if let Some(mac) = windows::normalize_mac(s) {
        if nic.mac.as_deref() == Some(mac.as_str()) {
            return true;
        }
    }
    nic.net_cfg_instance_id
        .as_deref()
        .is_some_and(|id| norm_guid(id) == norm_guid(s))
}

/// Plans from an already read [`SystemInfo`].
pub fn plan_info(hive: &Hive<'_>, info: &SystemInfo, opts: &Options) -> Result<Plan> {
    let mut remove: BTreeSet<String> = BTreeSet::new();
    remove.insert(WFP_LWF.to_string());
    for f in &opts.extra_filters {
        let g = norm_guid(f);
        if g.len() != 36 {
            bail!("--filter {f:?} is not a GUID like B70D6460-3635-4D42-B866-B8AB1A24454C");
        }
        remove.insert(g);
    }
    // Resolve the NIC selectors once, to NetCfgInstanceIds, so every control set gets the same
    // adapters even when their subkey numbers differ.
    let mut wanted_ids: Option<BTreeSet<String>> = None;
    if !opts.nics.is_empty() {
        let mut ids = BTreeSet::new();
        for sel in &opts.nics {
            let found: Vec<&Nic> = info
                .control_sets
                .iter()
                .flat_map(|cs| cs.nics.iter())
                .filter(|n| nic_matches(n, sel))
                .collect();
            if found.is_empty() {
                bail!("--nic {sel:?} matches no network adapter (see `imgprep inspect`)");
            }
            for n in found {
                if let Some(reason) = &n.excluded_because {
                    bail!(
                        "--nic {sel:?} is adapter {} ({}), which cannot be a boot NIC: {reason}",
                        n.subkey,
                        n.description
                    );
                }
                if let Some(id) = &n.net_cfg_instance_id {
                    ids.insert(norm_guid(id));
                }
            }
        }
        wanted_ids = Some(ids);
    }

    let mut p = Plan {
        changes: Vec::new(),
        blockers: Vec::new(),
        notes: Vec::new(),
        nics: Vec::new(),
        control_sets: info.control_sets.iter().map(|c| c.name.clone()).collect(),
    };
    for other in &info.other_control_sets {
        // A set asked for with --control-set is edited, whatever Select says.
        if p.control_sets.iter().any(|c| c.eq_ignore_ascii_case(other)) {
            continue;
        }
        p.notes.push(format!(
            "{other} exists but is not named by Select: left unchanged"
        ));
    }
    for cs in &info.control_sets {
        plan_control_set(hive, cs, opts, &remove, wanted_ids.as_ref(), &mut p)?;
    }
    plan_hardening(hive, info, opts, &mut p)?;
    Ok(p)
}

struct Ctx<'h, 'a> {
    hive: &'h Hive<'a>,
}

impl Ctx<'_, '_> {
    fn current(&self, key: &str, name: &str) -> Result<Option<Data>> {
        let Some(k) = self.hive.key(key)? else {
            return Ok(None);
        };
        match k.value(name)? {
            Some(v) => Ok(Some(v.decoded()?)),
            None => Ok(None),
        }
    }
}

fn hklm(key: &str, name: &str) -> String {
    if name.is_empty() {
        format!(r"HKLM\SYSTEM\{key}")
    } else {
        format!(r"HKLM\SYSTEM\{key}\{name}")
    }
}

fn push_set(
    p: &mut Plan,
    ctx: &Ctx<'_, '_>,
    key: String,
    name: &str,
    new: Data,
    reason: String,
    create_key: bool,
) -> Result<()> {
    let old = ctx.current(&key, name)?;
    if old.as_ref() == Some(&new) {
        return Ok(());
    }
    let (ty, data) = encode(&new);
    p.changes.push(Change {
        path: hklm(&key, name),
        old: show(old.as_ref()),
        new: show(Some(&new)),
        reason,
        op: RegOp::SetValue {
            key,
            name: name.to_string(),
            ty,
            data,
            create_key,
        },
    });
    Ok(())
}

/// Encodes decoded data back into (type, bytes).
pub fn encode(d: &Data) -> (u32, Vec<u8>) {
    use hivetool::hive::{encode_multi_sz, encode_sz};
    match d {
        Data::Dword(v) => (reg_type::DWORD, v.to_le_bytes().to_vec()),
        Data::DwordBe(v) => (reg_type::DWORD_BE, v.to_be_bytes().to_vec()),
        Data::Qword(v) => (reg_type::QWORD, v.to_le_bytes().to_vec()),
        Data::Sz(s) => (reg_type::SZ, encode_sz(s)),
        Data::ExpandSz(s) => (reg_type::EXPAND_SZ, encode_sz(s)),
        Data::Link(s) => (reg_type::LINK, encode_sz(s)),
        Data::MultiSz(v) => (reg_type::MULTI_SZ, encode_multi_sz(v)),
        Data::Binary(b) => (reg_type::BINARY, b.clone()),
        Data::None(b) => (reg_type::NONE, b.clone()),
        Data::Resource(t, b) | Data::Raw(t, b) => (*t, b.clone()),
    }
}

fn plan_control_set(
    hive: &Hive<'_>,
    cs: &ControlSet,
    opts: &Options,
    remove: &BTreeSet<String>,
    wanted: Option<&BTreeSet<String>>,
    p: &mut Plan,
) -> Result<()> {
    let ctx = Ctx { hive };
    let csn = &cs.name;
    let selected: Vec<&Nic> = cs
        .nics
        .iter()
        .filter(|n| n.boot_candidate)
        .filter(|n| match wanted {
            None => true,
            Some(ids) => n
                .net_cfg_instance_id
                .as_deref()
                .is_some_and(|id| ids.contains(&norm_guid(id))),
        })
        .collect();
    if selected.is_empty() {
        p.blockers.push(Blocker {
            kind: BlockerKind::NoBootNic,
            control_set: Some(csn.clone()),
            message: format!(
                "{csn}: no physical wired network adapter{} qualifies as a boot NIC \
                 (see `imgprep inspect` for the adapter table)",
                if wanted.is_some() {
                    " matching --nic"
                } else {
                    ""
                }
            ),
        });
        return Ok(());
    }
    let cs_key = hive
        .key(csn)?
        .ok_or_else(|| anyhow::anyhow!("{csn} vanished"))?;
    let mut services_to_boot: Vec<String> = Vec::new();
    for nic in &selected {
        let id = nic.net_cfg_instance_id.clone().unwrap_or_default();
        let svc = nic.service.clone().unwrap_or_default();
        p.nics.push(SelectedNic {
            control_set: csn.clone(),
            subkey: nic.subkey.clone(),
            description: nic.description.clone(),
            net_cfg_instance_id: id.clone(),
            service: svc.clone(),
        });
        // 1. Linkage\FilterList.
        let linkage = format!(r"{csn}\{NET_CLASS}\{}\Linkage", nic.subkey);
        let before: Vec<String> = nic.filters.iter().map(|f| f.entry.clone()).collect();
        let after: Vec<String> = before
            .iter()
            .filter(|e| !filter_guid_of(e).is_some_and(|g| remove.contains(&g)))
            .cloned()
            .collect();
        if after.len() != before.len() {
            let removed: Vec<String> = nic
                .filters
                .iter()
                .filter(|f| remove.contains(&f.guid))
                .map(|f| {
                    let note = if f.boot_loadable {
                        " (its service was boot-loadable already)"
                    } else {
                        ""
                    };
                    format!("{}{note}", f.name)
                })
                .collect();
            push_set(
                p,
                &ctx,
                linkage,
                "FilterList",
                Data::MultiSz(after.clone()),
                format!(
                    "remove {} from boot NIC {} ({})",
                    removed.join(", "),
                    nic.subkey,
                    nic.description
                ),
                false,
            )?;
        }
        // 1b. NetworkSetup2 binary FilterList (Windows 8+), kept consistent.
        if nic.ns2_filters.is_some() {
            let key = format!(r"{csn}\Control\NetworkSetup2\Interfaces\{id}\Kernel");
            if let Some(k) = key_under(
                &cs_key,
                &format!(r"Control\NetworkSetup2\Interfaces\{id}\Kernel"),
            )? {
                if let Some(v) = k.value("FilterList")? {
                    let data = v.data()?;
                    let kept: Vec<u8> = data
                        .chunks(18)
                        .filter(|c| {
                            c.len() != 18
                                || !ns2_filter_guids(c)
                                    .first()
                                    .is_some_and(|g| remove.contains(g))
                        })
                        .flatten()
                        .copied()
                        .collect();
                    if kept.len() != data.len() {
                        let old = Data::decode(v.data_type(), &data);
                        let new = Data::decode(v.data_type(), &kept);
                        p.changes.push(Change {
                            path: hklm(&key, "FilterList"),
                            old: show(Some(&old)),
                            new: show(Some(&new)),
                            reason: format!(
                                "keep the NetworkSetup2 copy of NIC {}'s bindings consistent",
                                nic.subkey
                            ),
                            op: RegOp::SetValue {
                                key,
                                name: "FilterList".into(),
                                ty: v.data_type(),
                                data: kept,
                                create_key: false,
                            },
                        });
                    }
                }
            }
        }
        // Blocking filters that stay.
        for f in &nic.filters {
            if remove.contains(&f.guid) {
                continue;
            }
            if f.mandatory && !f.boot_loadable {
                p.blockers.push(Blocker {
                    kind: BlockerKind::BlockingFilter,
                    control_set: Some(csn.clone()),
                    message: format!(
                        "{csn}: NIC {} ({}) keeps mandatory filter {} ({{{}}}), whose service {} \
                         does not load at boot: remove it with --filter {} or make its service \
                         boot-start",
                        nic.subkey,
                        nic.description,
                        f.name,
                        f.guid,
                        f.service.as_deref().unwrap_or("<unknown>"),
                        f.guid
                    ),
                });
            }
        }
        if !svc.is_empty()
            && !services_to_boot
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&svc))
        {
            services_to_boot.push(svc);
        }
    }
    if !opts.boot_start {
        return Ok(());
    }
    // 2. Boot-critical services.
    services_to_boot.push("iScsiPrt".to_string());
    for name in &services_to_boot {
        let svc = cs.services.get(name).cloned().unwrap_or_default();
        if !svc.exists {
            let (kind, what) = if name == "iScsiPrt" {
                (
                    BlockerKind::NoIscsiPrt,
                    "the iSCSI port driver service iScsiPrt is missing: this Windows cannot \
                     boot from iSCSI (install the iSCSI initiator, or use an image that has it)"
                        .to_string(),
                )
            } else {
                (
                    BlockerKind::MissingService,
                    format!("the boot NIC's miniport service {name} is missing"),
                )
            };
            p.blockers.push(Blocker {
                kind,
                control_set: Some(csn.clone()),
                message: format!("{csn}: {what}"),
            });
            continue;
        }
        let key = format!(r"{csn}\Services\{}", svc.name);
        push_set(
            p,
            &ctx,
            key.clone(),
            "Start",
            Data::Dword(0),
            format!(
                "{} must be loaded by the boot loader (SERVICE_BOOT_START)",
                svc.name
            ),
            false,
        )?;
        let flags = svc.boot_flags.unwrap_or(0) | 1;
        push_set(
            p,
            &ctx,
            key.clone(),
            "BootFlags",
            Data::Dword(flags),
            format!("{}: CM_SERVICE_NETWORK_BOOT_LOAD", svc.name),
            false,
        )?;
        if svc.start_override {
            p.changes.push(Change {
                path: hklm(&format!(r"{key}\StartOverride"), ""),
                old: "<present>".into(),
                new: "<deleted>".into(),
                reason: format!("StartOverride would override {}'s Start", svc.name),
                op: RegOp::DeleteKey {
                    key: format!(r"{key}\StartOverride"),
                },
            });
        }
    }
    for name in ["NDIS", "Tcpip"] {
        let svc = cs.services.get(name).cloned().unwrap_or_default();
        if !svc.exists {
            p.blockers.push(Blocker {
                kind: BlockerKind::MissingService,
                control_set: Some(csn.clone()),
                message: format!("{csn}: service {name} is missing"),
            });
            continue;
        }
        push_set(
            p,
            &ctx,
            format!(r"{csn}\Services\{}", svc.name),
            "Start",
            Data::Dword(0),
            format!("{} must be boot-start", svc.name),
            false,
        )?;
    }
    Ok(())
}

fn plan_hardening(hive: &Hive<'_>, info: &SystemInfo, opts: &Options, p: &mut Plan) -> Result<()> {
    let h = opts.hardening;
    let ctx = Ctx { hive };
    for cs in &info.control_sets {
        let c = &cs.name;
        if h.no_pagefile {
            push_set(
                p,
                &ctx,
                format!(r"{c}\Control\Session Manager\Memory Management"),
                "PagingFiles",
                Data::MultiSz(Vec::new()),
                "no pagefile on the iSCSI disk (--no-pagefile)".into(),
                false,
            )?;
        }
        if h.disable_dhcp_media_sense {
            push_set(
                p,
                &ctx,
                format!(r"{c}\Services\Tcpip\Parameters"),
                "DisableDhcpMediaSense",
                Data::Dword(1),
                "ignore media-sense events on the boot NIC (--disable-dhcp-media-sense)".into(),
                true,
            )?;
        }
        if h.no_auto_reboot {
            push_set(
                p,
                &ctx,
                format!(r"{c}\Control\CrashControl"),
                "AutoReboot",
                Data::Dword(0),
                "keep a stop error on screen (--no-auto-reboot)".into(),
                true,
            )?;
        }
        if h.no_hibernate {
            push_set(
                p,
                &ctx,
                format!(r"{c}\Control\Power"),
                "HibernateEnabled",
                Data::Dword(0),
                "no hibernation on a SAN disk (--no-hibernate)".into(),
                true,
            )?;
            push_set(
                p,
                &ctx,
                format!(r"{c}\Control\Session Manager\Power"),
                "HiberbootEnabled",
                Data::Dword(0),
                "no Fast Startup (--no-hibernate)".into(),
                true,
            )?;
        }
        if h.boot_driver_flags {
            let cur = ctx
                .current(&format!(r"{c}\Control"), "BootDriverFlags")?
                .and_then(|d| d.as_dword())
                .unwrap_or(0);
            push_set(
                p,
                &ctx,
                format!(r"{c}\Control"),
                "BootDriverFlags",
                Data::Dword(cur | 1),
                "load network-boot drivers even without an iBFT (--boot-driver-flags)".into(),
                false,
            )?;
        }
    }
    Ok(())
}
