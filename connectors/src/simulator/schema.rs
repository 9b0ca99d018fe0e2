//! Canonical signals, failure components, and how each organization writes rows.

use serde::{Deserialize, Serialize};

use super::error::SimError;

/// Canonical furnace signals the simulator can produce (names are the canonical
/// signal names used in org config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Zone 1 thermocouple reading, °C.
    Zone1Temp,
    /// Zone 2 thermocouple reading, °C.
    Zone2Temp,
    /// Zone 3 thermocouple reading, °C.
    Zone3Temp,
    /// Recipe temperature setpoint, °C (shared by all zones).
    TempSetpoint,
    /// Zone 1 heater output, %.
    Zone1Output,
    /// Zone 2 heater output, %.
    Zone2Output,
    /// Zone 3 heater output, %.
    Zone3Output,
    /// Measured carbon potential, %C.
    CarbonPotential,
    /// Recipe carbon potential setpoint, %C.
    CarbonSetpoint,
    /// Quench oil temperature, °C.
    QuenchOilTemp,
    /// Loading door open.
    DoorOpen,
    /// A heat-treatment cycle is running (soak).
    CycleActive,
    /// Heater element failure alarm.
    HeaterFault,
    /// Thermocouple failure alarm.
    ThermocoupleFault,
    /// Quench oil cooler failure alarm.
    OilCoolerFault,
    /// Carbon potential control failure alarm.
    CarbonFault,
}

impl Signal {
    /// Every signal, in the order of [`Signal::index`] (the order of `last_values`).
    pub const ALL: [Signal; 16] = [
        Signal::Zone1Temp,
        Signal::Zone2Temp,
        Signal::Zone3Temp,
        Signal::TempSetpoint,
        Signal::Zone1Output,
        Signal::Zone2Output,
        Signal::Zone3Output,
        Signal::CarbonPotential,
        Signal::CarbonSetpoint,
        Signal::QuenchOilTemp,
        Signal::DoorOpen,
        Signal::CycleActive,
        Signal::HeaterFault,
        Signal::ThermocoupleFault,
        Signal::OilCoolerFault,
        Signal::CarbonFault,
    ];

    /// The canonical signal name, e.g. `zone1_temp`.
    pub fn name(&self) -> &'static str {
        match self {
            Signal::Zone1Temp => "zone1_temp",
            Signal::Zone2Temp => "zone2_temp",
            Signal::Zone3Temp => "zone3_temp",
            Signal::TempSetpoint => "temp_setpoint",
            Signal::Zone1Output => "zone1_output",
            Signal::Zone2Output => "zone2_output",
            Signal::Zone3Output => "zone3_output",
            Signal::CarbonPotential => "carbon_potential",
            Signal::CarbonSetpoint => "carbon_setpoint",
            Signal::QuenchOilTemp => "quench_oil_temp",
            Signal::DoorOpen => "door_open",
            Signal::CycleActive => "cycle_active",
            Signal::HeaterFault => "heater_fault",
            Signal::ThermocoupleFault => "thermocouple_fault",
            Signal::OilCoolerFault => "oil_cooler_fault",
            Signal::CarbonFault => "carbon_fault",
        }
    }

    /// The signal with canonical name `name`, if any.
    pub fn from_name(name: &str) -> Option<Signal> {
        Signal::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// True for on/off signals (door, cycle, fault flags).
    pub fn is_boolean(&self) -> bool {
        self.index() >= Signal::DoorOpen.index()
    }

    /// Position of this signal in [`Signal::ALL`] and in `last_values`.
    pub fn index(&self) -> usize {
        *self as usize
    }

    /// Digits after the decimal point a historian keeps for this signal.
    pub fn decimals(&self) -> u32 {
        match self {
            Signal::CarbonPotential | Signal::CarbonSetpoint => 3,
            s if s.is_boolean() => 0,
            _ => 1,
        }
    }

    /// 1-based zone number for zone temperature/output signals.
    pub fn zone(&self) -> Option<usize> {
        match self {
            Signal::Zone1Temp | Signal::Zone1Output => Some(1),
            Signal::Zone2Temp | Signal::Zone2Output => Some(2),
            Signal::Zone3Temp | Signal::Zone3Output => Some(3),
            _ => None,
        }
    }
}

/// Failure components and the fault flag each trips.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Component {
    /// Heater elements ("Heating System"), trips `heater_fault`.
    #[serde(rename = "Heating System")]
    HeatingSystem,
    /// Thermocouples ("Temperature Sensing"), trips `thermocouple_fault`.
    #[serde(rename = "Temperature Sensing")]
    TemperatureSensing,
    /// Quench oil cooler ("Quench System"), trips `oil_cooler_fault`.
    #[serde(rename = "Quench System")]
    QuenchSystem,
    /// Carbon potential control ("Atmosphere Control"), trips `carbon_fault`.
    #[serde(rename = "Atmosphere Control")]
    AtmosphereControl,
}

impl Component {
    /// Every component, in the order used by per-component counters.
    pub const ALL: [Component; 4] = [
        Component::HeatingSystem,
        Component::TemperatureSensing,
        Component::QuenchSystem,
        Component::AtmosphereControl,
    ];

    /// The display name used in failure events and org config.
    pub fn name(&self) -> &'static str {
        match self {
            Component::HeatingSystem => "Heating System",
            Component::TemperatureSensing => "Temperature Sensing",
            Component::QuenchSystem => "Quench System",
            Component::AtmosphereControl => "Atmosphere Control",
        }
    }

    /// The component with display name `name`, if any.
    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// The fault flag whose rising edge marks this component's failure.
    pub fn fault_signal(&self) -> Signal {
        match self {
            Component::HeatingSystem => Signal::HeaterFault,
            Component::TemperatureSensing => Signal::ThermocoupleFault,
            Component::QuenchSystem => Signal::OilCoolerFault,
            Component::AtmosphereControl => Signal::CarbonFault,
        }
    }

    /// Position in [`Component::ALL`].
    pub fn index(&self) -> usize {
        *self as usize
    }
}

/// How an org's time column is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// RFC 3339 string with milliseconds and `Z`, e.g. `2024-01-01T00:00:30.000Z`.
    Rfc3339,
    /// Milliseconds since the epoch as a JSON number.
    EpochMs,
}

/// How an org writes boolean signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoolFormat {
    /// JSON `true` / `false`.
    TrueFalse,
    /// `0` / `1`.
    ZeroOne,
}

/// How one org writes its rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrgSchema {
    /// Organization id; also the output file stem.
    pub org_id: String,
    /// Raw column holding the machine id.
    pub machine_column: String,
    /// Raw column holding the event time.
    pub time_column: String,
    /// Encoding of the time column.
    pub time_format: TimeFormat,
    /// Encoding of boolean signals.
    pub bool_format: BoolFormat,
    /// Machine ids are `format!("{prefix}{:02}", i + 1)`.
    pub machine_prefix: String,
    /// Canonical signal → raw column name, emitted in this order; signals not
    /// listed are not emitted.
    pub columns: Vec<(Signal, String)>,
    /// What this org calls each component, in [`Component::ALL`] order (the
    /// names its `component_mapping` and failure events use).
    pub component_names: [String; 4],
}

/// The standard component names.
pub fn standard_component_names() -> [String; 4] {
    Component::ALL.map(|c| c.name().to_string())
}

fn cols(pairs: &[(Signal, &str)]) -> Vec<(Signal, String)> {
    pairs.iter().map(|(s, c)| (*s, (*c).to_string())).collect()
}

impl OrgSchema {
    /// `n` built-in orgs: `acme-heat`, `borealis-forge`, `cobalt-thermal`, then
    /// `org-004`, … reusing those three layouts in turn with machine prefix `M-`.
    pub fn builtin(n: usize) -> Vec<OrgSchema> {
        use Signal::*;
        let base = [
            OrgSchema {
                org_id: "acme-heat".into(),
                machine_column: "furnace_id".into(),
                time_column: "timestamp".into(),
                time_format: TimeFormat::Rfc3339,
                bool_format: BoolFormat::TrueFalse,
                machine_prefix: "IQ-".into(),
                component_names: standard_component_names(),
                columns: cols(&[
                    (Zone1Temp, "hz1pv"),
                    (Zone2Temp, "hz2pv"),
                    (Zone3Temp, "hz3pv"),
                    (TempSetpoint, "hzsp"),
                    (Zone1Output, "hz1out"),
                    (Zone2Output, "hz2out"),
                    (Zone3Output, "hz3out"),
                    (CarbonPotential, "cppv"),
                    (CarbonSetpoint, "cpsp"),
                    (QuenchOilTemp, "oiltemp"),
                    (DoorOpen, "door_open"),
                    (CycleActive, "cycle_on"),
                    (HeaterFault, "hz1hfail"),
                    (ThermocoupleFault, "tcfail"),
                    (OilCoolerFault, "oilfail"),
                    (CarbonFault, "cpfail"),
                ]),
            },
            OrgSchema {
                org_id: "borealis-forge".into(),
                machine_column: "asset".into(),
                time_column: "time_ms".into(),
                time_format: TimeFormat::EpochMs,
                bool_format: BoolFormat::ZeroOne,
                machine_prefix: "BF-".into(),
                component_names: [
                    "Heating",
                    "Thermocouples",
                    "Quench Oil Cooler",
                    "Carbon Control",
                ]
                .map(String::from),
                columns: cols(&[
                    (Zone1Temp, "Zone1_Temp_C"),
                    (Zone2Temp, "Zone2_Temp_C"),
                    (Zone3Temp, "Zone3_Temp_C"),
                    (TempSetpoint, "Setpoint_C"),
                    (Zone1Output, "Zone1_Power_Pct"),
                    (Zone2Output, "Zone2_Power_Pct"),
                    (Zone3Output, "Zone3_Power_Pct"),
                    (CarbonPotential, "CP_Percent"),
                    (CarbonSetpoint, "CP_Setpoint"),
                    (QuenchOilTemp, "QuenchOil_C"),
                    (DoorOpen, "DoorOpen"),
                    (CycleActive, "CycleRunning"),
                    (HeaterFault, "HeaterAlarm"),
                    (ThermocoupleFault, "TC_Alarm"),
                    (OilCoolerFault, "OilCoolerAlarm"),
                    (CarbonFault, "CP_Alarm"),
                ]),
            },
            OrgSchema {
                org_id: "cobalt-thermal".into(),
                machine_column: "machine".into(),
                time_column: "event_time".into(),
                time_format: TimeFormat::Rfc3339,
                bool_format: BoolFormat::TrueFalse,
                machine_prefix: "CT-F".into(),
                component_names: standard_component_names(),
                columns: cols(&[
                    (Zone1Temp, "t_zone_a"),
                    (Zone2Temp, "t_zone_b"),
                    (TempSetpoint, "t_set"),
                    (Zone1Output, "pwr_zone_a"),
                    (Zone2Output, "pwr_zone_b"),
                    (CarbonPotential, "carbon"),
                    (CarbonSetpoint, "carbon_set"),
                    (QuenchOilTemp, "oil_t"),
                    (DoorOpen, "door"),
                    (CycleActive, "running"),
                    (HeaterFault, "fault_heater"),
                    (ThermocoupleFault, "fault_tc"),
                    (OilCoolerFault, "fault_oil"),
                    (CarbonFault, "fault_carbon"),
                ]),
            },
        ];
        (0..n)
            .map(|i| {
                let mut s = base[i % 3].clone();
                if i >= 3 {
                    s.org_id = format!("org-{:03}", i + 1);
                    s.machine_prefix = "M-".into();
                }
                s
            })
            .collect()
    }

    /// This org's name for `c`.
    pub fn component_name(&self, c: Component) -> &str {
        &self.component_names[c.index()]
    }

    /// Number of heating zones this org's furnaces have: the highest zone any
    /// listed zone signal names (at least 1). Failures only hit existing zones.
    pub fn zone_count(&self) -> usize {
        self.columns
            .iter()
            .filter_map(|(s, _)| s.zone())
            .max()
            .unwrap_or(1)
    }

    /// The id of machine `i` (0-based).
    pub fn machine_id(&self, i: usize) -> String {
        format!("{}{:02}", self.machine_prefix, i + 1)
    }

    /// Checks that the schema can be written unambiguously.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |reason: String| SimError::InvalidSchema {
            org: self.org_id.clone(),
            reason,
        };
        // The org id names the output file, so it must be a plain file stem.
        if self.org_id.is_empty()
            || self.org_id == "events"
            || !self
                .org_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || self.org_id.starts_with('.')
        {
            return Err(bad(
                "org_id must be non-empty, not `events`, and use only [A-Za-z0-9._-] (it names the output file)".into(),
            ));
        }
        let mut names: Vec<&str> = vec![&self.machine_column, &self.time_column];
        let mut seen_signals = Vec::new();
        for (s, c) in &self.columns {
            if seen_signals.contains(s) {
                return Err(bad(format!("signal `{}` is mapped twice", s.name())));
            }
            seen_signals.push(*s);
            names.push(c);
        }
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                return Err(bad("a column name is empty".into()));
            }
            if names[..i].contains(n) {
                return Err(bad(format!("column `{n}` appears twice")));
            }
        }
        Ok(())
    }
}
