// swift-tools-version:6.0
// twofactor: TOTP two-factor authentication for Linux logins.
// Targets are named for their job; see README.md ("Architecture") for how they fit together.
import PackageDescription

let embeddedLibraryDir = "/opt/swift/usr/lib/swift/embedded/x86_64-unknown-linux-gnu"

let package = Package(
    name: "twofactor",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "twofactord", targets: ["twofactord"]),
        .executable(name: "twofactor", targets: ["twofactor"]),
        // Installed as /usr/lib/x86_64-linux-gnu/security/pam_twofactor.so.
        .library(name: "pam_twofactor", type: .dynamic, targets: ["PAMTwoFactor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", exact: "7.10.0"),
        // Graceful shutdown (Sources/TwoFactorDaemon/Lifecycle/GracefulShutdown.swift says why):
        // signal trapping that cannot lose an early SIGTERM.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", exact: "2.13.0"),
        // The PostgreSQL store (Store/PostgresAccountStore.swift), with TLS through NIOSSL.
        .package(url: "https://github.com/vapor/postgres-nio.git", exact: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", exact: "2.37.6"),
    ],
    targets: [
        // OpenSSL's libcrypto: HMAC, AES-256-GCM and the CSPRNG.
        .systemLibrary(
            name: "CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        // libqrencode: QR codes drawn by `twofactor enable` and for enrollment at login.
        .systemLibrary(
            name: "CQREncode",
            pkgConfig: "libqrencode",
            providers: [.apt(["libqrencode-dev"])]
        ),
        // Small C helpers for things Swift cannot call directly (variadic syslog, adjtimex).
        .target(name: "CTwoFactorSystem"),

        // One-time passwords, base32, otpauth URIs, recovery codes, crypto primitives.
        .target(name: "TwoFactorCore", dependencies: ["CLibCrypto", "CQREncode"]),
        // The daemon's wire protocol. Written in the subset of Swift that also compiles in
        // Embedded mode: PAMTwoFactor compiles this same file (a symlink), so there is one codec.
        .target(name: "TwoFactorWire"),
        // Blocking Unix-socket client used by the command line and the tests.
        .target(name: "TwoFactorClient", dependencies: ["TwoFactorWire"]),
        // The daemon: store, verification logic, audit log, socket server, clock check.
        .target(
            name: "TwoFactorDaemon",
            dependencies: [
                "TwoFactorCore", "TwoFactorWire", "CTwoFactorSystem",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                // SQLite's C API, for the account rows (Store/SQLiteAccountRows.swift).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "twofactord",
            dependencies: [
                "TwoFactorDaemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // `twofactor admin doctor`: PAM stacks and sshd settings judged, without running them.
        // Compiles the module's option parser (Options.swift) through symlinks, like PAMTwoFactorPure.
        .target(name: "TwoFactorDoctor"),
        .executableTarget(
            name: "twofactor",
            dependencies: [
                "TwoFactorCore", "TwoFactorWire", "TwoFactorClient", "CQREncode", "TwoFactorDoctor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // The PAM module: a C shim exporting pam_sm_* and an Embedded Swift verifier.
        .target(name: "CPAMShim", linkerSettings: [.linkedLibrary("pam")]),
        .target(
            name: "PAMTwoFactor",
            dependencies: ["CPAMShim"],
            exclude: ["exports.map"],
            swiftSettings: [
                .enableExperimentalFeature("Embedded"),
                .unsafeFlags(["-wmo", "-Osize"]),
            ],
            linkerSettings: [
                .unsafeFlags([
                    "-Xlinker", "-z", "-Xlinker", "defs",
                    "-Xlinker", "-z", "-Xlinker", "nodelete",
                    // Absolute, so the build works whatever directory swift build runs in.
                    "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/PAMTwoFactor/exports.map",
                ]),
                // Debug info would triple the module's size (366 KB instead of 81 KB).
                .unsafeFlags(["-Xlinker", "--strip-debug"], .when(configuration: .release)),
            ]
        ),

        // The module's pure parts (options, code shapes, request encoding) as ordinary Swift, so
        // they can be unit-tested: the very files PAMTwoFactor compiles, through symlinks.
        .target(name: "PAMTwoFactorPure"),

        // bench/run only (never installed): fills a store with enrolled accounts through the
        // daemon's own rules, for the 1,000,000-account scale tier (BENCHMARKS.md).
        .executableTarget(name: "twofactor-bench-populate", dependencies: ["TwoFactorDaemon", "TwoFactorCore"],
                          path: "bench/populate", swiftSettings: [.swiftLanguageMode(.v5)]),

        .testTarget(name: "TwoFactorCoreTests", dependencies: ["TwoFactorCore"]),
        .testTarget(name: "PAMTwoFactorTests", dependencies: ["PAMTwoFactorPure"]),
        .testTarget(name: "TwoFactorDoctorTests", dependencies: ["TwoFactorDoctor"]),
        .testTarget(name: "TwoFactorWireTests", dependencies: ["TwoFactorWire"]),
        .testTarget(
            name: "TwoFactorDaemonTests",
            dependencies: ["TwoFactorDaemon", "TwoFactorCore", "TwoFactorWire", "TwoFactorClient"]
        ),
    ]
)
