// The socket side: framing, peer credentials, one request at a time per connection, read timeout,
// connection limit. Nothing a client sends can crash the daemon or hold up other clients.
import Foundation
import NIOCore
import NIOExtras
import NIOPosix
import TwoFactorWire

extension WireMessage: @unchecked Sendable {}
extension WireField: @unchecked Sendable {}
extension Status: @unchecked Sendable {}
extension TwoFactorWire.Operation: @unchecked Sendable {}
extension VerificationMethod: @unchecked Sendable {}

/// Laid out like `struct ucred` (Swift's Glibc does not export it).
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// Counts open connections and knows whether the daemon is stopping, shared by all event loops.
final class ServerCounters: @unchecked Sendable {
    private let lock = NSLock()
    private var connections = 0
    private var connectionsByUser: [UInt32: Int] = [:]
    private var rootConnections = 0
    private var turnedAway = 0

    /// Admits a connection from `uid`. Root (sshd, sudo, login) has slots of its own, so no local
    /// user can crowd logins out; every other user holds at most `perUserLimit` of the shared
    /// `limit`, so one user cannot take them all from the others either.
    func acquireConnection(uid: UInt32, limits: ServerSettings) -> Bool {
        lock.lock(); defer { lock.unlock() }
        if uid == 0 {
            guard rootConnections < limits.rootConnections else { return false }
            rootConnections += 1
            return true
        }
        let held = connectionsByUser[uid, default: 0]
        guard connections < limits.maxConnections, held < limits.connectionsPerUser else { return false }
        connections += 1
        connectionsByUser[uid] = held + 1
        return true
    }

    func releaseConnection(uid: UInt32) {
        lock.lock(); defer { lock.unlock() }
        if uid == 0 {
            rootConnections -= 1
            return
        }
        connections -= 1
        let held = connectionsByUser[uid, default: 1] - 1
        connectionsByUser[uid] = held > 0 ? held : nil
    }

    /// Connections being told `busy` are bounded too, so a flood cannot exhaust descriptors.
    func acquireTurnedAway(limit: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard turnedAway < limit else { return false }
        turnedAway += 1
        return true
    }
    func releaseTurnedAway() { lock.lock(); turnedAway -= 1; lock.unlock() }

    private var draining = false

    /// False once shutdown began: a request not started by then is not started at all, so every
    /// request the daemon works on is answered before its connection closes (GracefulShutdown).
    func tryStartRequest() -> Bool {
        lock.lock(); defer { lock.unlock() }
        return !draining
    }
    func beginDraining() { lock.lock(); draining = true; lock.unlock() }
    var isDraining: Bool { lock.lock(); defer { lock.unlock() }; return draining }
}

/// Finds out who a connection's peer is, for every request, without blocking an event loop. The
/// NSS lookups (getpwuid_r, getgrnam_r) may wait on LDAP or SSSD, so they run on a small pool of
/// their own; root needs no lookup and is answered at once. Slow lookups or one user's flood
/// therefore delay only other non-root callers, never logins (sshd and sudo ask as root). The
/// pool's queue is bounded by the non-root connection limit: each connection has at most one
/// request in progress.
final class CallerResolver: Sendable {
    static let lookupThreads = 4

    private let directory: UserDirectory
    private let pool: NIOThreadPool

    /// `pool` must be started; its owner shuts it down before the event loops (queued lookups
    /// then fail on live loops and are answered `busy`).
    init(directory: UserDirectory, pool: NIOThreadPool) {
        self.directory = directory
        self.pool = pool
    }

    func resolve(_ peer: PeerCredentials, on eventLoop: EventLoop) -> EventLoopFuture<Caller> {
        if peer.uid == 0 { return eventLoop.makeSucceededFuture(directory.rootCaller(gid: peer.gid, pid: peer.pid)) }
        let directory = self.directory
        return pool.runIfActive(eventLoop: eventLoop) {
            directory.caller(uid: peer.uid, gid: peer.gid, pid: peer.pid)
        }
    }
}

enum FrameEvent {
    case frame([UInt8])
    case protocolError(String)
}

/// Splits the byte stream into request payloads. After a bad length it stops decoding: where the
/// next frame would start can no longer be trusted.
final class RequestFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = FrameEvent
    private var failed = false

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if failed {
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            return .needMoreData
        }
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        if length < 2 || length > UInt32(WireProtocol.maxRequestLength) {
            failed = true
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            let problem = length < 2
                ? "frame length \(length) is too short"
                : "frame length \(length) exceeds the limit of \(WireProtocol.maxRequestLength) bytes"
            context.fireChannelRead(wrapInboundOut(.protocolError(problem)))
            return .needMoreData
        }
        guard buffer.readableBytes >= WireProtocol.headerLength + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: WireProtocol.headerLength)
        let payload = buffer.readBytes(length: Int(length)) ?? []
        context.fireChannelRead(wrapInboundOut(.frame(payload)))
        return .continue
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A truncated frame at EOF is dropped: the client is gone and cannot be answered.
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        return .needMoreData
    }
}

/// One client connection: answers its requests in order, one at a time.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = FrameEvent
    typealias OutboundOut = ByteBuffer

    static let maxQueuedRequests = 16

    private let peer: PeerCredentials
    private let resolver: CallerResolver
    private let processor: RequestProcessor
    private let counters: ServerCounters
    private let readTimeout: TimeAmount
    private var context: ChannelHandlerContext?
    private var queued: [[UInt8]] = []
    private var processing = false
    private var closeAfterAnswer = false
    /// The client shut down its sending side: answer what it sent, then close.
    private var inputClosed = false
    private var timeout: Scheduled<Void>?

    init(peer: PeerCredentials, resolver: CallerResolver, processor: RequestProcessor, counters: ServerCounters,
         readTimeout: TimeAmount) {
        self.peer = peer
        self.resolver = resolver
        self.processor = processor
        self.counters = counters
        self.readTimeout = readTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { armTimeout() }
    }

    func channelActive(context: ChannelHandlerContext) {
        armTimeout()
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .protocolError(let problem):
            timeout?.cancel()
            queued.removeAll()
            if processing {
                closeAfterAnswer = true
            } else {
                writeAndClose(RequestProcessor.answer(.badRequest, message: problem))
            }
        case .frame(let payload):
            guard !closeAfterAnswer else { return }
            timeout?.cancel()
            if processing {
                guard queued.count < Self.maxQueuedRequests else {
                    queued.removeAll()
                    closeAfterAnswer = true
                    return
                }
                queued.append(payload)
            } else {
                process(payload)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            inputClosed = true
            if !processing && queued.isEmpty { context.close(promise: nil) }
            return
        }
        if event is ChannelShouldQuiesceEvent {
            // The daemon is stopping: answer the request in progress, start no other.
            queued.removeAll()
            if processing {
                closeAfterAnswer = true
            } else {
                context.close(promise: nil)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    private func process(_ payload: [UInt8]) {
        guard let context else { return }
        let request: WireMessage
        do {
            request = try WireMessage.decode(payload: payload)
        } catch {
            writeAndClose(RequestProcessor.answer(.badRequest, message: "malformed request fields"))
            return
        }
        guard counters.tryStartRequest() else {
            // Shutting down: close without touching the store; the client retries elsewhere.
            context.close(promise: nil)
            return
        }
        processing = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let processor = self.processor
        // Resolved for each request, not once per connection: a connection may outlive the
        // caller's admin-group membership, or the account itself.
        resolver.resolve(peer, on: eventLoop).whenComplete { result in
            switch result {
            case .success(let caller):
                processor.handle(request, caller: caller) { answer in
                    // Answered at once (check) or from the store's threads (everything else).
                    if eventLoop.inEventLoop {
                        loopBound.value.finish(answer)
                    } else {
                        eventLoop.execute { loopBound.value.finish(answer) }
                    }
                }
            case .failure:  // the lookup pool is stopping with the daemon
                loopBound.value.finish(RequestProcessor.answer(.busy, message: "twofactord is stopping; try again"))
            }
        }
    }

    private func finish(_ answer: WireMessage) {
        processing = false
        guard let context, context.channel.isActive else { return }
        if closeAfterAnswer {
            writeAndClose(answer)
            return
        }
        context.writeAndFlush(wrapOutboundOut(Self.frame(answer, allocator: context.channel.allocator)), promise: nil)
        if !queued.isEmpty {
            process(queued.removeFirst())
        } else if inputClosed {
            context.close(promise: nil)
        } else {
            armTimeout()
        }
    }

    private func writeAndClose(_ answer: WireMessage) {
        guard let context else { return }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(Self.frame(answer, allocator: channel.allocator))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    /// The client has `readTimeout` to deliver a whole request: trickling bytes does not extend it.
    private func armTimeout() {
        guard let context else { return }
        timeout?.cancel()
        let channel = context.channel
        timeout = context.eventLoop.scheduleTask(in: readTimeout) {
            channel.close(promise: nil)
        }
    }

    static func frame(_ message: WireMessage, allocator: ByteBufferAllocator) -> ByteBuffer {
        var frame = message.encodedFrame()
        if frame.count - WireProtocol.headerLength > WireProtocol.maxResponseLength {
            frame = RequestProcessor.answer(.internalError, message: "answer too large").encodedFrame()
        }
        var buffer = allocator.buffer(capacity: frame.count)
        buffer.writeBytes(frame)
        return buffer
    }
}

/// Over the connection limit: say `busy`, give the client a moment to read it, then close.
final class BusyHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {
        let answer = RequestProcessor.answer(.busy, message: "twofactord is serving too many connections; try again")
        context.writeAndFlush(wrapOutboundOut(ConnectionHandler.frame(answer, allocator: context.channel.allocator)), promise: nil)
        let channel = context.channel
        context.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}  // discarded

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The daemon is stopping; the busy answer has been sent already.
        if event is ChannelShouldQuiesceEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

public struct ServerSettings: Sendable {
    /// Connections shared by all non-root callers.
    public var maxConnections: Int
    public var readTimeout: Double

    public init(maxConnections: Int, readTimeout: Double) {
        self.maxConnections = maxConnections
        self.readTimeout = readTimeout
    }

    /// What one non-root user may hold of the shared connections.
    public var connectionsPerUser: Int { min(8, maxConnections) }
    /// Root's own connections, beside the shared ones.
    public var rootConnections: Int { 4 * maxConnections }
}

/// Builds the NIO server bootstrap shared by the bound and the adopted socket.
enum ServerFactory {
    /// `quiescing` collects the accepted connections, for GracefulShutdown.
    static func bootstrap(group: EventLoopGroup, settings: ServerSettings, processor: RequestProcessor,
                          resolver: CallerResolver, counters: ServerCounters,
                          quiescing: ServerQuiescingHelper) -> ServerBootstrap {
        let timeout = TimeAmount.nanoseconds(Int64(settings.readTimeout * 1_000_000_000))
        return ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiescing.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 4)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                guard let provider = channel as? SocketOptionProvider else { return channel.close() }
                let credentials: EventLoopFuture<PeerCredentials> =
                    provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SO_PEERCRED)
                return credentials.flatMapThrowing { peer in
                    guard counters.acquireConnection(uid: peer.uid, limits: settings) else {
                        guard counters.acquireTurnedAway(limit: settings.maxConnections + 16) else {
                            channel.close(promise: nil)
                            return
                        }
                        channel.closeFuture.whenComplete { _ in counters.releaseTurnedAway() }
                        try channel.pipeline.syncOperations.addHandler(BusyHandler())
                        return
                    }
                    channel.closeFuture.whenComplete { _ in counters.releaseConnection(uid: peer.uid) }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RequestFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionHandler(peer: peer, resolver: resolver, processor: processor, counters: counters,
                                          readTimeout: timeout))
                    // Accepted just as the stop began: its quiesce event may have passed before
                    // the handler was there to see it.
                    if counters.isDraining { channel.close(promise: nil) }
                }
            }
    }
}
