// swift-tools-version:6.0
// SocketKit: BSD sockets with a visible TCP state machine. No package dependencies by design:
// Glibc, Foundation, Dispatch, Synchronization and a small C target only.
import PackageDescription

let package = Package(
    name: "SocketKit",
    products: [
        .library(name: "SocketKit", targets: ["SocketKit"]),
        .executable(name: "EchoServer", targets: ["EchoServer"]),
        .executable(name: "EchoClient", targets: ["EchoClient"]),
    ],
    targets: [
        .target(
            name: "CSocketKit",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .target(name: "SocketKit", dependencies: ["CSocketKit"]),
        .executableTarget(name: "EchoServer", dependencies: ["SocketKit"]),
        .executableTarget(name: "EchoClient", dependencies: ["SocketKit"]),
        .testTarget(name: "SocketKitTests", dependencies: ["SocketKit", "CSocketKit"]),
        // Depends on the executables so `swift test` builds them; the tests spawn them from the
        // build directory next to the test bundle.
        .testTarget(name: "EchoTests", dependencies: ["SocketKit", "EchoServer", "EchoClient"]),
    ]
)
