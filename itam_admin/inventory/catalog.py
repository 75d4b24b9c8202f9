"""Real-looking hardware, operating systems, applications and vendors the demo data is drawn from. Plain data only;
never used by an export."""

from __future__ import annotations

from typing import NamedTuple


class HardwareProfile(NamedTuple):
    manufacturer: str
    model: str
    kind: str  # laptop, desktop, server, vm: drives the host name, sizes and operating systems
    weight: int  # how common the profile is in a fleet
    cpu_types: tuple[str, ...]
    os_family: str  # windows, mac, linux, windows_server


HARDWARE_PROFILES: tuple[HardwareProfile, ...] = (
    HardwareProfile("Dell Inc.", "Latitude 5440", "laptop", 14, ("13th Gen Intel(R) Core(TM) i5-1345U",), "windows"),
    HardwareProfile("Dell Inc.", "Latitude 7440", "laptop", 8, ("13th Gen Intel(R) Core(TM) i7-1365U",), "windows"),
    HardwareProfile("Dell Inc.", "OptiPlex 7010", "desktop", 8, ("13th Gen Intel(R) Core(TM) i7-13700",), "windows"),
    HardwareProfile("Dell Inc.", "Precision 3581", "laptop", 3, ("13th Gen Intel(R) Core(TM) i7-13800H",), "windows"),
    HardwareProfile("HP", "HP EliteBook 840 G10", "laptop", 10, ("13th Gen Intel(R) Core(TM) i5-1345U",), "windows"),
    HardwareProfile("HP", "HP ProBook 450 G9", "laptop", 6, ("12th Gen Intel(R) Core(TM) i5-1235U",), "windows"),
    HardwareProfile(
        "HP", "HP EliteDesk 800 G6", "desktop", 5, ("Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz",), "windows"
    ),
    HardwareProfile("LENOVO", "ThinkPad T14 Gen 4", "laptop", 9, ("AMD Ryzen 7 PRO 7840U",), "windows"),
    HardwareProfile(
        "LENOVO", "ThinkPad X1 Carbon Gen 11", "laptop", 5, ("13th Gen Intel(R) Core(TM) i7-1365U",), "windows"
    ),
    HardwareProfile(
        "LENOVO", "ThinkCentre M70q Gen 4", "desktop", 3, ("13th Gen Intel(R) Core(TM) i5-13500T",), "windows"
    ),
    HardwareProfile(
        "Microsoft Corporation", "Surface Laptop 5", "laptop", 3, ("12th Gen Intel(R) Core(TM) i7-1265U",), "windows"
    ),
    HardwareProfile("Apple Inc.", "MacBook Pro (14-inch, 2023)", "laptop", 6, ("Apple M2 Pro", "Apple M3 Pro"), "mac"),
    HardwareProfile("Apple Inc.", "MacBook Air (M2, 2022)", "laptop", 4, ("Apple M2",), "mac"),
    HardwareProfile(
        "Dell Inc.", "PowerEdge R750", "server", 2, ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",), "windows_server"
    ),
    HardwareProfile(
        "HPE", "ProLiant DL380 Gen10 Plus", "server", 2, ("Intel(R) Xeon(R) Silver 4314 CPU @ 2.40GHz",), "linux"
    ),
    HardwareProfile(
        "Lenovo", "ThinkSystem SR650 V2", "server", 1, ("Intel(R) Xeon(R) Gold 5318Y CPU @ 2.10GHz",), "linux"
    ),
    HardwareProfile(
        "VMware, Inc.",
        "VMware Virtual Platform",
        "vm",
        7,
        ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",),
        "windows_server",
    ),
    HardwareProfile("VMware, Inc.", "VMware7,1", "vm", 4, ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",), "linux"),
    HardwareProfile(
        "Microsoft Corporation", "Virtual Machine", "vm", 3, ("AMD EPYC 7763 64-Core Processor",), "windows_server"
    ),
    HardwareProfile("Amazon EC2", "m6i.xlarge", "vm", 2, ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",), "linux"),
)

OPERATING_SYSTEMS: dict[str, tuple[tuple[str, str], ...]] = {
    "windows": (
        ("Microsoft Windows 11 Enterprise", "10.0.22631"),
        ("Microsoft Windows 11 Enterprise", "10.0.22621"),
        ("Microsoft Windows 10 Enterprise", "10.0.19045"),
        ("Microsoft Windows 11 Pro", "10.0.22631"),
    ),
    "windows_server": (
        ("Microsoft Windows Server 2022 Standard", "10.0.20348"),
        ("Microsoft Windows Server 2019 Datacenter", "10.0.17763"),
        ("Microsoft Windows Server 2016 Standard", "10.0.14393"),
    ),
    "mac": (("macOS Sonoma", "14.4.1"), ("macOS Sonoma", "14.3"), ("macOS Ventura", "13.6.5")),
    "linux": (
        ("Red Hat Enterprise Linux", "9.3"),
        ("Red Hat Enterprise Linux", "8.9"),
        ("Ubuntu", "22.04.4 LTS"),
        ("Ubuntu", "20.04.6 LTS"),
    ),
}

HOST_PREFIXES = {"laptop": ("NB", "LT"), "desktop": ("WS", "PC"), "server": ("SRV",), "vm": ("VM", "SRV")}
SITES = ("NYC", "LON", "FRA", "SFO", "SIN", "TOR", "SYD", "BER")
RAM_MB = {
    "laptop": (8192, 16384, 16384, 32768),
    "desktop": (16384, 32768),
    "server": (131072, 262144, 524288),
    "vm": (4096, 8192, 16384, 32768),
}
DISK_GB = {"laptop": (256, 512, 512, 1024), "desktop": (512, 1024), "server": (1200, 2400, 4800), "vm": (80, 100, 200)}
CORES_PER_CPU = {"laptop": (8, 10, 12), "desktop": (8, 16), "server": (16, 24, 32), "vm": (1,)}


class Application(NamedTuple):
    display_name: str
    publisher: str
    versions: tuple[str, ...]
    edition: str | None
    location: str | None


_PF = "C:\\Program Files\\"
_PF86 = "C:\\Program Files (x86)\\"

APPLICATIONS: dict[str, tuple[Application, ...]] = {
    "windows": (
        Application(
            "Microsoft 365 Apps for enterprise - en-us",
            "Microsoft Corporation",
            ("16.0.17328.20184", "16.0.17425.20176", "16.0.17531.20140"),
            "E3",
            _PF + "Microsoft Office",
        ),
        Application(
            "Microsoft Edge",
            "Microsoft Corporation",
            ("122.0.2365.92", "123.0.2420.65"),
            None,
            _PF86 + "Microsoft\\Edge\\Application",
        ),
        Application(
            "Microsoft Teams", "Microsoft Corporation", ("24033.811.2738.2546", "24060.2623.2790.8046"), None, None
        ),
        Application(
            "Microsoft OneDrive", "Microsoft Corporation", ("24.040.0225.0001",), None, _PF + "Microsoft OneDrive"
        ),
        Application(
            "Microsoft Visual Studio Code",
            "Microsoft Corporation",
            ("1.87.2", "1.88.0"),
            None,
            _PF + "Microsoft VS Code",
        ),
        Application(
            "Microsoft Visual C++ 2015-2022 Redistributable (x64)",
            "Microsoft Corporation",
            ("14.38.33130.0", "14.36.32532.0"),
            None,
            None,
        ),
        Application("Microsoft .NET Runtime - 8.0.3 (x64)", "Microsoft Corporation", ("8.0.3.33428",), None, None),
        Application(
            "Microsoft Visio Professional 2021",
            "Microsoft Corporation",
            ("16.0.14332.20651",),
            "Professional",
            _PF + "Microsoft Office",
        ),
        Application(
            "Microsoft Project Professional 2021",
            "Microsoft Corporation",
            ("16.0.14332.20651",),
            "Professional",
            _PF + "Microsoft Office",
        ),
        Application(
            "Google Chrome",
            "Google LLC",
            ("123.0.6312.59", "122.0.6261.129"),
            None,
            _PF + "Google\\Chrome\\Application",
        ),
        Application("Mozilla Firefox (x64 en-US)", "Mozilla", ("124.0.1", "115.9.1esr"), None, _PF + "Mozilla Firefox"),
        Application(
            "Adobe Acrobat Reader DC", "Adobe Inc.", ("24.001.20604", "23.008.20533"), None, _PF + "Adobe\\Acrobat DC"
        ),
        Application("Adobe Acrobat (64-bit)", "Adobe Inc.", ("24.001.20604",), "Pro", _PF + "Adobe\\Acrobat DC"),
        Application("Adobe Photoshop 2024", "Adobe Inc.", ("25.5.1",), None, _PF + "Adobe\\Adobe Photoshop 2024"),
        Application(
            "Zoom Workplace (64-bit)",
            "Zoom Video Communications, Inc.",
            ("6.0.2.33403", "5.17.11.34827"),
            None,
            _PF + "Zoom\\bin",
        ),
        Application("Slack", "Slack Technologies Inc.", ("4.37.94",), None, None),
        Application("Java 8 Update 401 (64-bit)", "Oracle Corporation", ("8.0.4010.10",), None, _PF + "Java\\jre-1.8"),
        Application("7-Zip 23.01 (x64)", "Igor Pavlov", ("23.01",), None, _PF + "7-Zip"),
        Application("Notepad++ (64-bit x64)", "Notepad++ Team", ("8.6.4", "8.6.2"), None, _PF + "Notepad++"),
        Application(
            "Cisco Secure Client - AnyConnect VPN",
            "Cisco Systems, Inc.",
            ("5.1.2.42",),
            None,
            _PF86 + "Cisco\\Cisco Secure Client",
        ),
        Application("CrowdStrike Windows Sensor", "CrowdStrike, Inc.", ("7.11.18110.0", "7.10.17706.0"), None, None),
        Application("AutoCAD 2024 - English", "Autodesk, Inc.", ("24.3.61.0",), None, _PF + "Autodesk\\AutoCAD 2024"),
        Application(
            "Tableau 2023.3 (20233.24.0305.1147)",
            "Tableau Software",
            ("23.3.2285",),
            "Desktop",
            _PF + "Tableau\\Tableau 2023.3",
        ),
        Application(
            "IntelliJ IDEA 2023.3.4",
            "JetBrains s.r.o.",
            ("233.14475.28",),
            "Ultimate",
            _PF + "JetBrains\\IntelliJ IDEA 2023.3.4",
        ),
        Application("Python 3.11.8 (64-bit)", "Python Software Foundation", ("3.11.8150.0",), None, None),
        Application("Git", "The Git Development Community", ("2.44.0",), None, _PF + "Git"),
        Application("VLC media player", "VideoLAN", ("3.0.20",), None, _PF + "VideoLAN\\VLC"),
        Application("Docker Desktop", "Docker Inc.", ("4.28.0",), None, _PF + "Docker\\Docker"),
        Application("Snagit 2024", "TechSmith Corporation", ("24.1.0.1434",), None, _PF + "TechSmith\\Snagit 2024"),
        Application(
            "SAP GUI for Windows 8.00 Compilation 1", "SAP SE", ("8.00.9.0",), None, _PF86 + "SAP\\FrontEnd\\SAPgui"
        ),
    ),
    "windows_server": (
        Application("Microsoft SQL Server 2019 (64-bit)", "Microsoft Corporation", ("15.0.4355.3",), "Standard", None),
        Application(
            "Microsoft SQL Server 2022 (64-bit)", "Microsoft Corporation", ("16.0.4115.5",), "Enterprise", None
        ),
        Application(
            "Microsoft SQL Server Management Studio - 19.3",
            "Microsoft Corporation",
            ("19.3.4.0",),
            None,
            _PF86 + "Microsoft SQL Server Management Studio 19",
        ),
        Application(
            "Microsoft Visual C++ 2015-2022 Redistributable (x64)",
            "Microsoft Corporation",
            ("14.38.33130.0",),
            None,
            None,
        ),
        Application(
            "Microsoft Edge", "Microsoft Corporation", ("122.0.2365.92",), None, _PF86 + "Microsoft\\Edge\\Application"
        ),
        Application("VMware Tools", "VMware, Inc.", ("12.3.5.22544099",), None, _PF + "VMware\\VMware Tools"),
        Application("CrowdStrike Windows Sensor", "CrowdStrike, Inc.", ("7.11.18110.0",), None, None),
        Application(
            "Veeam Agent for Microsoft Windows",
            "Veeam Software Group GmbH",
            ("6.1.0.349",),
            "Server",
            _PF + "Veeam\\Endpoint Backup",
        ),
        Application("Splunk Universal Forwarder", "Splunk, Inc.", ("9.2.0.1",), None, _PF + "SplunkUniversalForwarder"),
        Application(
            "Oracle Database 19c",
            "Oracle Corporation",
            ("19.0.0.0.0",),
            "Enterprise Edition",
            "C:\\app\\oracle\\product\\19.0.0\\dbhome_1",
        ),
        Application("7-Zip 23.01 (x64)", "Igor Pavlov", ("23.01",), None, _PF + "7-Zip"),
        Application("Notepad++ (64-bit x64)", "Notepad++ Team", ("8.6.4",), None, _PF + "Notepad++"),
    ),
    "mac": (
        Application("Google Chrome", "Google LLC", ("123.0.6312.59",), None, "/Applications/Google Chrome.app"),
        Application("Microsoft Word", "Microsoft Corporation", ("16.83",), None, "/Applications/Microsoft Word.app"),
        Application("Microsoft Excel", "Microsoft Corporation", ("16.83",), None, "/Applications/Microsoft Excel.app"),
        Application(
            "Microsoft Outlook", "Microsoft Corporation", ("16.83",), None, "/Applications/Microsoft Outlook.app"
        ),
        Application(
            "Microsoft Teams",
            "Microsoft Corporation",
            ("24033.811.2738.2546",),
            None,
            "/Applications/Microsoft Teams.app",
        ),
        Application("Slack", "Slack Technologies Inc.", ("4.37.94",), None, "/Applications/Slack.app"),
        Application("zoom.us", "Zoom Video Communications, Inc.", ("6.0.2",), None, "/Applications/zoom.us.app"),
        Application(
            "Adobe Photoshop 2024",
            "Adobe Inc.",
            ("25.5.1",),
            None,
            "/Applications/Adobe Photoshop 2024/Adobe Photoshop 2024.app",
        ),
        Application("Figma", "Figma, Inc.", ("124.0.2",), None, "/Applications/Figma.app"),
        Application("iTerm2", "George Nachman", ("3.4.23",), None, "/Applications/iTerm.app"),
        Application("Docker Desktop", "Docker Inc.", ("4.28.0",), None, "/Applications/Docker.app"),
        Application("Falcon", "CrowdStrike, Inc.", ("7.11.18003.0",), None, "/Applications/Falcon.app"),
    ),
    "linux": (
        Application("openssh-server", "Red Hat, Inc.", ("8.7p1-34.el9",), None, "/usr/sbin"),
        Application("nginx", "F5, Inc.", ("1.24.0", "1.22.1"), None, "/usr/sbin"),
        Application(
            "postgresql-server", "PostgreSQL Global Development Group", ("15.6", "13.14"), None, "/usr/pgsql-15"
        ),
        Application("java-17-openjdk", "Red Hat, Inc.", ("17.0.10.0.7-2.el9",), None, "/usr/lib/jvm"),
        Application("docker-ce", "Docker Inc.", ("25.0.4",), None, "/usr/bin"),
        Application("falcon-sensor", "CrowdStrike, Inc.", ("7.11.0-16405",), None, "/opt/CrowdStrike"),
        Application("splunkforwarder", "Splunk, Inc.", ("9.2.0.1",), None, "/opt/splunkforwarder"),
        Application("python3", "Python Software Foundation", ("3.9.18", "3.11.7"), None, "/usr/bin"),
        Application(
            "Oracle Database 19c",
            "Oracle Corporation",
            ("19.0.0.0.0",),
            "Enterprise Edition",
            "/u01/app/oracle/product/19.0.0/dbhome_1",
        ),
        Application("vmware-tools", "VMware, Inc.", ("12.3.5",), None, "/usr/bin"),
    ),
}


class ContractKind(NamedTuple):
    vendor: str
    code: str  # prefix of the vendor's contract numbers
    contract_type: str
    product: str
    yearly_cost: tuple[int, int]  # range of the yearly cost in whole currency units


CONTRACT_KINDS: tuple[ContractKind, ...] = (
    ContractKind("Microsoft", "MSEA", "Software License", "Enterprise Agreement (Microsoft 365 E3)", (80_000, 900_000)),
    ContractKind("Adobe", "ADB", "Subscription", "Creative Cloud for teams", (10_000, 120_000)),
    ContractKind("Dell Technologies", "DELL", "Warranty", "ProSupport Plus for client systems", (5_000, 60_000)),
    ContractKind("Dell Technologies", "DFS", "Lease", "Laptop fleet lease (36 months)", (50_000, 400_000)),
    ContractKind("HP Inc.", "HPCP", "Warranty", "HP Care Pack next-business-day", (3_000, 40_000)),
    ContractKind("Lenovo", "LNV", "Warranty", "Premier Support", (3_000, 50_000)),
    ContractKind("Cisco Systems", "CSCO", "Maintenance", "Smart Net Total Care", (20_000, 250_000)),
    ContractKind("Oracle", "ORA", "Support", "Database Enterprise Edition support", (40_000, 600_000)),
    ContractKind("Salesforce", "SFDC", "Subscription", "Sales Cloud Enterprise", (30_000, 500_000)),
    ContractKind("Atlassian", "ATL", "Subscription", "Jira Software Cloud Premium", (8_000, 150_000)),
    ContractKind("VMware by Broadcom", "VMW", "Subscription", "VMware Cloud Foundation", (60_000, 800_000)),
    ContractKind("CrowdStrike", "CRWD", "Subscription", "Falcon Enterprise", (25_000, 300_000)),
    ContractKind("Zoom Video Communications", "ZM", "Subscription", "Zoom Workplace Business", (5_000, 60_000)),
    ContractKind("Iron Mountain", "IRM", "Service", "IT asset disposition services", (2_000, 30_000)),
)

CURRENCIES = ("USD", "USD", "USD", "EUR", "EUR", "GBP")
