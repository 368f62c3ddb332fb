// swift-tools-version:6.0
// SocketKit: BSD sockets with a visible TCP state machine. No package dependencies by design:
// Glibc, Dispatch, Synchronization and a small C target only (Foundation in tests at most).
//
// Layers, each a target, dependencies in one direction only (docs/ARCHITECTURE.md):
//   CSocketKit → SocketKit (thin wrapper) → TCPTrace (observing) → EchoKit (engines) → executables
// Every module a target imports is declared here: scripts/check-imports.sh (run by .ci/run)
// fails otherwise, since SwiftPM would let a transitive module be imported undeclared.
import PackageDescription

let package = Package(
    name: "SocketKit",
    products: [
        .library(name: "SocketKit", targets: ["SocketKit"]),
        .library(name: "TCPTrace", targets: ["TCPTrace"]),
        .executable(name: "EchoServer", targets: ["EchoServer"]),
        .executable(name: "EchoClient", targets: ["EchoClient"]),
        .executable(name: "TCPWatch", targets: ["TCPWatch"]),
    ],
    targets: [
        .target(
            name: "CSocketKit",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .target(name: "SocketKit", dependencies: ["CSocketKit"]),
        .target(name: "TCPTrace", dependencies: ["SocketKit", "CSocketKit"]),
        // The fault layer (issue 20): a user-space relay between network namespaces (veth + AF_PACKET).
        .target(name: "WireFaults", dependencies: ["SocketKit", "TCPTrace", "CSocketKit"]),
        .target(name: "EchoKit", dependencies: ["SocketKit", "TCPTrace", "CSocketKit", "WireFaults"]),
        .executableTarget(name: "EchoServer", dependencies: ["EchoKit", "SocketKit", "TCPTrace"]),
        .executableTarget(name: "EchoClient", dependencies: ["EchoKit", "SocketKit", "TCPTrace"]),
        .executableTarget(name: "TCPWatch", dependencies: ["EchoKit", "SocketKit", "TCPTrace"]),
        // Shared by both test targets (swift-argument-parser keeps one such helper target).
        .target(name: "TestSupport", dependencies: ["SocketKit", "TCPTrace"], path: "Tests/TestSupport"),
        .testTarget(name: "SocketKitTests", dependencies: ["SocketKit", "TCPTrace", "EchoKit", "CSocketKit", "TestSupport"]),
        // Depends on the executables so `swift test` builds them; the tests spawn them from the
        // build directory next to the test bundle.
        .testTarget(name: "EchoTests", dependencies: ["SocketKit", "TCPTrace", "EchoKit", "WireFaults", "TestSupport", "EchoServer", "EchoClient", "TCPWatch"]),
    ]
)
