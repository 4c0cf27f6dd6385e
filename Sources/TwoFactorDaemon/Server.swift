// The socket side: framing, peer credentials, one request at a time per connection, read timeout,
// connection limit. Nothing a client sends can crash the daemon or hold up other clients.
import Foundation
import NIOCore
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

/// Counts open connections and requests in flight, shared by all event loops.
final class ServerCounters: @unchecked Sendable {
    private let lock = NSLock()
    private var connections = 0
    private var turnedAway = 0
    private var requests = 0

    func acquireConnection(limit: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard connections < limit else { return false }
        connections += 1
        return true
    }
    func releaseConnection() { lock.lock(); connections -= 1; lock.unlock() }

    /// Connections being told `busy` are bounded too, so a flood cannot exhaust descriptors.
    func acquireTurnedAway(limit: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard turnedAway < limit else { return false }
        turnedAway += 1
        return true
    }
    func releaseTurnedAway() { lock.lock(); turnedAway -= 1; lock.unlock() }

    private var draining = false

    /// False once shutdown began: requests not started by then are not started at all, so
    /// waiting for `requestsInFlight` to reach zero covers everything that will be answered.
    func tryStartRequest() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard !draining else { return false }
        requests += 1
        return true
    }
    func beginDraining() { lock.lock(); draining = true; lock.unlock() }
    func requestFinished() { lock.lock(); requests -= 1; lock.unlock() }
    var requestsInFlight: Int { lock.lock(); defer { lock.unlock() }; return requests }
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

    private let caller: Caller
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

    init(caller: Caller, processor: RequestProcessor, counters: ServerCounters, readTimeout: TimeAmount) {
        self.caller = caller
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
        processor.handle(request, caller: caller) { answer in
            eventLoop.execute { loopBound.value.finish(answer) }
        }
    }

    private func finish(_ answer: WireMessage) {
        processing = false
        counters.requestFinished()
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

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

public struct ServerSettings: Sendable {
    public var maxConnections: Int
    public var readTimeout: Double
}

/// Builds the NIO server bootstrap shared by the bound and the adopted socket.
enum ServerFactory {
    static func bootstrap(group: EventLoopGroup, settings: ServerSettings, processor: RequestProcessor,
                          directory: UserDirectory, counters: ServerCounters) -> ServerBootstrap {
        let timeout = TimeAmount.nanoseconds(Int64(settings.readTimeout * 1_000_000_000))
        return ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 4)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                if !counters.acquireConnection(limit: settings.maxConnections) {
                    guard counters.acquireTurnedAway(limit: settings.maxConnections + 16) else { return channel.close() }
                    channel.closeFuture.whenComplete { _ in counters.releaseTurnedAway() }
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(BusyHandler())
                    }
                }
                channel.closeFuture.whenComplete { _ in counters.releaseConnection() }
                guard let provider = channel as? SocketOptionProvider else { return channel.close() }
                let credentials: EventLoopFuture<PeerCredentials> =
                    provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SO_PEERCRED)
                return credentials.flatMapThrowing { peer in
                    let caller = directory.caller(uid: peer.uid, gid: peer.gid, pid: peer.pid)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RequestFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionHandler(caller: caller, processor: processor, counters: counters, readTimeout: timeout))
                }
            }
    }
}
