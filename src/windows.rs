// SPDX-License-Identifier: MIT OR Apache-2.0
//! What a Windows SYSTEM hive says about network boot: control sets, network adapters, their
//! filter bindings, the filters' definitions and the boot-relevant services.
//!
//! Everything here only reads (see shared/docs/iscsi-prep.md for the rules). [`crate::plan`]
//! turns a [`SystemInfo`] into edits.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use hivetool::{Data, Hive, Key};
use serde::Serialize;

/// Class key of network adapters.
pub const NET_CLASS: &str = r"Control\Class\{4D36E972-E325-11CE-BFC1-08002BE10318}";
/// Class key of network services/filters.
pub const NET_SERVICE_CLASS: &str = r"Control\Network\{4D36E974-E325-11CE-BFC1-08002BE10318}";
/// The WFP lightweight filter (upper) that blocks iSCSI boot.
pub const WFP_LWF: &str = "B70D6460-3635-4D42-B866-B8AB1A24454C";

/// Characteristics bits.
pub mod ncf {
    /// NCF_VIRTUAL
    pub const VIRTUAL: u32 = 0x1;
    /// NCF_SOFTWARE_ENUMERATED
    pub const SOFTWARE_ENUMERATED: u32 = 0x2;
    /// NCF_PHYSICAL
    pub const PHYSICAL: u32 = 0x4;
    /// NCF_HIDDEN
    pub const HIDDEN: u32 = 0x8;
    /// NCF_NO_SERVICE
    pub const NO_SERVICE: u32 = 0x10;
    /// NCF_NOT_USER_REMOVABLE
    pub const NOT_USER_REMOVABLE: u32 = 0x20;
    /// NCF_HAS_UI
    pub const HAS_UI: u32 = 0x80;
}

/// Decodes a Characteristics value into flag names.
pub fn characteristics_names(c: u32) -> Vec<&'static str> {
    const NAMES: &[(u32, &str)] = &[
        (ncf::VIRTUAL, "virtual"),
        (ncf::SOFTWARE_ENUMERATED, "software-enumerated"),
        (ncf::PHYSICAL, "physical"),
        (ncf::HIDDEN, "hidden"),
        (ncf::NO_SERVICE, "no-service"),
        (ncf::NOT_USER_REMOVABLE, "not-user-removable"),
        (0x40, "multiport-instanced-adapter"),
        (ncf::HAS_UI, "has-ui"),
        (0x4000, "filter"),
        (0x40000, "lw-filter"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| c & bit != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// Well-known filter GUIDs and names.
pub fn known_filter_name(guid: &str) -> Option<&'static str> {
    const KNOWN: &[(&str, &str)] = &[
        (WFP_LWF, "WFP Lightweight Filter (upper, WfpLwf)"),
        (
            "3BFD7820-D65C-4C1B-9FEA-983A019639EA",
            "WFP Lightweight Filter (lower)",
        ),
        (
            "B5F4D659-7DAA-4565-8E41-BE220ED60542",
            "QoS Packet Scheduler",
        ),
        ("EA24CD6C-D17A-4348-9190-09F0D5BE83DD", "NDIS Capture"),
        ("E475CF9A-60CD-4439-A75F-0079CE0E18A1", "Native WiFi Filter"),
        (
            "5CBF81BF-5055-47CD-9055-A76B2B4E3698",
            "Virtual WiFi Filter",
        ),
        ("F15DC512-1E94-4CDB-9B42-27A953C64E67", "L2 Bridge"),
    ];
    KNOWN
        .iter()
        .find(|(g, _)| g.eq_ignore_ascii_case(guid))
        .map(|(_, n)| *n)
}

/// `SYSTEM\Select`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Select {
    /// `Current`.
    pub current: u32,
    /// `Default`.
    pub default: u32,
    /// `LastKnownGood`.
    pub last_known_good: u32,
    /// `Failed`.
    pub failed: u32,
}

/// A boot-relevant service.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Service {
    /// Service key name as found.
    pub name: String,
    /// Whether the key exists.
    pub exists: bool,
    /// `Start`.
    pub start: Option<u32>,
    /// `BootFlags`.
    pub boot_flags: Option<u32>,
    /// Whether a `StartOverride` subkey exists.
    pub start_override: bool,
    /// `Group`.
    pub group: Option<String>,
}

impl Service {
    /// Loads when Windows boots from the network: Start 0 and BootFlags bit 0, no override.
    pub fn network_boot_ready(&self) -> bool {
        self.exists
            && self.start == Some(0)
            && self.boot_flags.unwrap_or(0) & 1 != 0
            && !self.start_override
    }
    /// Boot-loadable at all (Start 0, or BootFlags bit 0 set).
    pub fn boot_loadable(&self) -> bool {
        self.exists && (self.start == Some(0) || self.boot_flags.unwrap_or(0) & 1 != 0)
    }
}

/// One entry of a NIC's filter stack.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FilterEntry {
    /// The whole `Linkage\FilterList` string.
    pub entry: String,
    /// The filter GUID (upper case, no braces).
    pub guid: String,
    /// Display name (from the hive or the known list).
    pub name: String,
    /// Whether the filter is mandatory (a mandatory filter that cannot load blocks the NIC).
    pub mandatory: bool,
    /// The filter's service, if known.
    pub service: Option<String>,
    /// Whether its service loads at boot.
    pub boot_loadable: bool,
}

/// A network adapter instance under the Net class key.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Nic {
    /// Four-digit subkey (`0007`).
    pub subkey: String,
    /// `DriverDesc`.
    pub description: String,
    /// `Characteristics`.
    pub characteristics: u32,
    /// Decoded characteristics.
    pub characteristics_names: Vec<String>,
    /// `NetCfgInstanceId`.
    pub net_cfg_instance_id: Option<String>,
    /// Miniport service (`Ndi\Service`).
    pub service: Option<String>,
    /// `ComponentId`.
    pub component_id: Option<String>,
    /// `DeviceInstanceID`.
    pub device_instance_id: Option<String>,
    /// `*IfType`.
    pub if_type: Option<u32>,
    /// `*PhysicalMediaType`.
    pub physical_media_type: Option<u32>,
    /// MAC address from NetworkSetup2 (`PermanentAddress` or `CurrentAddress`), if any.
    pub mac: Option<String>,
    /// `Linkage\FilterList`.
    pub filters: Vec<FilterEntry>,
    /// Filter GUIDs in the NetworkSetup2 binary `FilterList`, if present.
    pub ns2_filters: Option<Vec<String>>,
    /// Whether this adapter can be an iSCSI boot NIC (physical, wired, not virtual/hidden).
    pub boot_candidate: bool,
    /// Why not, if not.
    pub excluded_because: Option<String>,
}

/// What one control set says.
#[derive(Debug, Clone, Serialize)]
pub struct ControlSet {
    /// `ControlSet001`.
    pub name: String,
    /// Which Select values name it (Current, Default, LastKnownGood).
    pub roles: Vec<String>,
    /// All network adapters.
    pub nics: Vec<Nic>,
    /// Services relevant to boot: NDIS, Tcpip, iScsiPrt and each NIC's miniport.
    pub services: BTreeMap<String, Service>,
    /// Whether NetworkSetup2 exists (Windows 8 and later).
    pub network_setup2: bool,
}

/// Everything the SYSTEM hive tells about network boot.
#[derive(Debug, Clone, Serialize)]
pub struct SystemInfo {
    /// `Select`.
    pub select: Select,
    /// The control sets named by Current, Default and LastKnownGood (deduplicated).
    pub control_sets: Vec<ControlSet>,
    /// Other `ControlSetNNN` keys found (not edited).
    pub other_control_sets: Vec<String>,
}

fn dword(k: &Key<'_>, name: &str) -> Result<Option<u32>> {
    match k.value(name)? {
        Some(v) => Ok(v.decoded()?.as_dword()),
        None => Ok(None),
    }
}

fn string(k: &Key<'_>, name: &str) -> Result<Option<String>> {
    match k.value(name)? {
        Some(v) => Ok(v.decoded()?.as_str().map(str::to_string)),
        None => Ok(None),
    }
}

/// Reads a REG_MULTI_SZ value (empty when missing).
pub fn multi(k: &Key<'_>, name: &str) -> Result<Option<Vec<String>>> {
    match k.value(name)? {
        Some(v) => match v.decoded()? {
            Data::MultiSz(items) => Ok(Some(items)),
            other => bail!(
                "{name} is not REG_MULTI_SZ (type {}): {other:?}",
                v.data_type()
            ),
        },
        None => Ok(None),
    }
}

/// Extracts the filter GUID from a FilterList entry `{NIC}-{FILTER}-0000`.
pub fn filter_guid_of(entry: &str) -> Option<String> {
    let rest = entry.get(1..)?;
    let close = rest.find('}')?;
    let rest = rest.get(close + 1..)?.strip_prefix("-{")?;
    let end = rest.find('}')?;
    Some(rest[..end].to_ascii_uppercase())
}

/// Formats a 16-byte little-endian GUID as `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`.
pub fn guid_from_le_bytes(b: &[u8]) -> Option<String> {
    if b.len() < 16 {
        return None;
    }
    let d1 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let d2 = u16::from_le_bytes([b[4], b[5]]);
    let d3 = u16::from_le_bytes([b[6], b[7]]);
    Some(format!(
        "{d1:08X}-{d2:04X}-{d3:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    ))
}

/// Splits a NetworkSetup2 binary FilterList into its 18-byte entries' GUIDs.
pub fn ns2_filter_guids(data: &[u8]) -> Vec<String> {
    data.chunks_exact(18)
        .filter_map(guid_from_le_bytes)
        .collect()
}

/// Formats a MAC address.
pub fn format_mac(b: &[u8]) -> Option<String> {
    (b.len() == 6).then(|| {
        b.iter()
            .map(|x| format!("{x:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// Normalises a MAC address given by a user (any of `:`, `-`, `.` or no separators).
pub fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let seps_ok = s
        .chars()
        .all(|c| c.is_ascii_hexdigit() || ":-.".contains(c));
    if hex.len() != 12 || !seps_ok {
        return None;
    }
    let bytes: Vec<u8> = (0..6)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    format_mac(&bytes)
}

/// Reads `Select`.
pub fn read_select(hive: &Hive<'_>) -> Result<Select> {
    let sel = hive
        .key("Select")?
        .ok_or_else(|| anyhow!("the hive has no Select key: is this a SYSTEM hive?"))?;
    let get = |n: &str| -> Result<u32> {
        dword(&sel, n)?.ok_or_else(|| anyhow!("Select has no DWORD value {n}"))
    };
    Ok(Select {
        current: get("Current")?,
        default: get("Default")?,
        last_known_good: get("LastKnownGood")?,
        failed: dword(&sel, "Failed")?.unwrap_or(0),
    })
}

fn read_service(cs: &Key<'_>, name: &str) -> Result<Service> {
    let path = format!(r"Services\{name}");
    // A service is one subkey of Services: an empty or path-like name names none.
    let k = if name.is_empty() || name.contains('\\') {
        None
    } else {
        key_under(cs, &path)?
    };
    let Some(k) = k else {
        return Ok(Service {
            name: name.to_string(),
            ..Service::default()
        });
    };
    Ok(Service {
        name: k.name(),
        exists: true,
        start: dword(&k, "Start")?,
        boot_flags: dword(&k, "BootFlags")?,
        start_override: k.subkey("StartOverride")?.is_some(),
        group: string(&k, "Group")?,
    })
}

/// Looks a path up below `k`.
pub fn key_under<'a>(k: &Key<'a>, path: &str) -> Result<Option<Key<'a>>> {
    let mut cur = *k;
    for part in path.split('\\').filter(|p| !p.is_empty()) {
        match cur.subkey(part)? {
            Some(s) => cur = s,
            None => return Ok(None),
        }
    }
    Ok(Some(cur))
}

struct FilterDef {
    name: Option<String>,
    service: Option<String>,
    run_type: Option<u32>,
    ns2_optional: Option<bool>,
}

fn read_filter_def(cs: &Key<'_>, guid: &str, ns2: bool) -> Result<FilterDef> {
    let mut def = FilterDef {
        name: None,
        service: None,
        run_type: None,
        ns2_optional: None,
    };
    if let Some(k) = key_under(cs, &format!(r"{NET_SERVICE_CLASS}\{{{guid}}}"))? {
        def.name = string(&k, "Description")?.or(string(&k, "ComponentId")?);
        if let Some(ndi) = k.subkey("Ndi")? {
            def.service = string(&ndi, "Service")?;
            def.run_type = dword(&ndi, "FilterRunType")?;
        }
    }
    if ns2 {
        if let Some(k) = key_under(
            cs,
            &format!(r"Control\NetworkSetup2\Filters\{{{guid}}}\Kernel"),
        )? {
            def.ns2_optional = Some(dword(&k, "Optional")? == Some(1));
        }
    }
    Ok(def)
}

/// Reads a control set.
pub fn read_control_set(hive: &Hive<'_>, name: &str, roles: Vec<String>) -> Result<ControlSet> {
    let cs = hive
        .key(name)?
        .ok_or_else(|| anyhow!("Select points to {name}, which does not exist"))?;
    let network_setup2 = key_under(&cs, r"Control\NetworkSetup2")?.is_some();
    let mut services = BTreeMap::new();
    for s in ["NDIS", "Tcpip", "iScsiPrt"] {
        services.insert(s.to_string(), read_service(&cs, s)?);
    }
    let mut filter_defs: BTreeMap<String, FilterDef> = BTreeMap::new();
    let mut nics = Vec::new();
    if let Some(class) = key_under(&cs, NET_CLASS)? {
        for sub in class.subkeys()? {
            let sub = sub?;
            let subkey = sub.name();
            if subkey.len() != 4 || !subkey.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let characteristics = dword(&sub, "Characteristics")?.unwrap_or(0);
            let net_cfg_instance_id = string(&sub, "NetCfgInstanceId")?;
            let service = match sub.subkey("Ndi")? {
                Some(ndi) => string(&ndi, "Service")?.filter(|s| !s.is_empty()),
                None => None,
            };
            let if_type = dword(&sub, "*IfType")?;
            let physical_media_type = dword(&sub, "*PhysicalMediaType")?;
            let list = match sub.subkey("Linkage")? {
                Some(l) => multi(&l, "FilterList")?.unwrap_or_default(),
                None => Vec::new(),
            };
            let (mut mac, mut ns2_filters) = (None, None);
            if let (true, Some(id)) = (network_setup2, &net_cfg_instance_id) {
                if let Some(k) = key_under(
                    &cs,
                    &format!(r"Control\NetworkSetup2\Interfaces\{id}\Kernel"),
                )? {
                    for n in ["PermanentAddress", "CurrentAddress"] {
                        if mac.is_none() {
                            if let Some(v) = k.value(n)? {
                                mac = format_mac(&v.data()?);
                            }
                        }
                    }
                    if let Some(v) = k.value("FilterList")? {
                        ns2_filters = Some(ns2_filter_guids(&v.data()?));
                    }
                }
            }
            let mut filters = Vec::new();
            for entry in list {
                let guid = filter_guid_of(&entry).unwrap_or_default();
                if !filter_defs.contains_key(&guid) {
                    filter_defs.insert(guid.clone(), read_filter_def(&cs, &guid, network_setup2)?);
                }
                let def = &filter_defs[&guid];
                let svc = match &def.service {
                    Some(s) => Some(read_service(&cs, s)?),
                    None => None,
                };
                let mandatory = match def.ns2_optional {
                    Some(optional) => !optional,
                    None => def.run_type.unwrap_or(1) == 1,
                };
                filters.push(FilterEntry {
                    name: known_filter_name(&guid)
                        .map(str::to_string)
                        .or(def.name.clone())
                        .unwrap_or_else(|| format!("{{{guid}}}")),
                    guid,
                    entry,
                    mandatory,
                    service: def.service.clone(),
                    boot_loadable: svc.as_ref().is_some_and(Service::boot_loadable),
                });
            }
            let wireless = if_type == Some(71) || physical_media_type == Some(9);
            let excluded_because = if characteristics & ncf::PHYSICAL == 0 {
                Some("not physical (NCF_PHYSICAL clear)".to_string())
            } else if characteristics & (ncf::VIRTUAL | ncf::HIDDEN) != 0 {
                Some("virtual or hidden adapter".to_string())
            } else if wireless {
                Some("wireless (firmware cannot iSCSI-boot over Wi-Fi)".to_string())
            } else if service.is_none() {
                Some("no miniport service (Ndi\\Service)".to_string())
            } else if net_cfg_instance_id.is_none() {
                Some("no NetCfgInstanceId".to_string())
            } else {
                None
            };
            if let (None, Some(svc)) = (&excluded_because, &service) {
                if !services.contains_key(svc) {
                    services.insert(svc.clone(), read_service(&cs, svc)?);
                }
            }
            nics.push(Nic {
                subkey,
                description: string(&sub, "DriverDesc")?.unwrap_or_default(),
                characteristics,
                characteristics_names: characteristics_names(characteristics)
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                net_cfg_instance_id,
                service,
                component_id: string(&sub, "ComponentId")?,
                device_instance_id: string(&sub, "DeviceInstanceID")?,
                if_type,
                physical_media_type,
                mac,
                filters,
                ns2_filters,
                boot_candidate: excluded_because.is_none(),
                excluded_because,
            });
        }
    }
    Ok(ControlSet {
        name: cs.name(),
        roles,
        nics,
        services,
        network_setup2,
    })
}

/// Reads everything relevant from a SYSTEM hive.
pub fn read_system(hive: &Hive<'_>) -> Result<SystemInfo> {
    let select = read_select(hive)?;
    let mut wanted: Vec<(u32, Vec<String>)> = Vec::new();
    for (n, role) in [
        (select.current, "Current"),
        (select.default, "Default"),
        (select.last_known_good, "LastKnownGood"),
    ] {
        if n == 0 {
            continue;
        }
        match wanted.iter_mut().find(|(m, _)| *m == n) {
            Some((_, roles)) => roles.push(role.to_string()),
            None => wanted.push((n, vec![role.to_string()])),
        }
    }
    if wanted.is_empty() {
        bail!("Select names no control set (Current, Default and LastKnownGood are 0)");
    }
    let mut control_sets = Vec::new();
    for (n, roles) in wanted {
        let name = format!("ControlSet{n:03}");
        control_sets
            .push(read_control_set(hive, &name, roles).with_context(|| format!("reading {name}"))?);
    }
    let mut other_control_sets = Vec::new();
    for k in hive.root()?.subkeys()? {
        let name = k?.name();
        let is_cs = name.len() == 13
            && name
                .get(..10)
                .is_some_and(|p| p.eq_ignore_ascii_case("ControlSet"))
            && name
                .get(10..)
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()));
        if is_cs
            && !control_sets
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&name))
        {
            other_control_sets.push(name);
        }
    }
    Ok(SystemInfo {
        select,
        control_sets,
        other_control_sets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_guid_parsing() {
        let e =
            "{6AAFC9A9-0542-4DB2-8760-CCFFA953737C}-{b70d6460-3635-4D42-B866-B8AB1A24454C}-0000";
        assert_eq!(filter_guid_of(e).as_deref(), Some(WFP_LWF));
        assert_eq!(filter_guid_of("garbage"), None);
        assert_eq!(filter_guid_of("{x}"), None);
    }

    #[test]
    fn guid_bytes() {
        // {B70D6460-3635-4D42-B866-B8AB1A24454C} in its little-endian layout.
        let b = [
            0x60, 0x64, 0x0D, 0xB7, 0x35, 0x36, 0x42, 0x4D, 0xB8, 0x66, 0xB8, 0xAB, 0x1A, 0x24,
            0x45, 0x4C, 0, 0,
        ];
        assert_eq!(ns2_filter_guids(&b), [WFP_LWF]);
    }

    #[test]
    fn macs() {
        assert_eq!(
            normalize_mac("00-0c-29-AB-cd-01").as_deref(),
            Some("00:0C:29:AB:CD:01")
        );
        assert_eq!(
            normalize_mac("000c29abcd01").as_deref(),
            Some("00:0C:29:AB:CD:01")
        );
        assert_eq!(normalize_mac("00:0c:29"), None);
        assert_eq!(characteristics_names(0x84), ["physical", "has-ui"]);
    }
}
