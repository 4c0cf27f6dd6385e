// Which NTP answers of a round to believe (issue 10). NTP replies are not authenticated: any
// pool member, DNS spoofer or on-path host can send one, and it also chooses the T2/T3 stamps the
// round-trip delay is computed from, so "the lowest delay" is something a liar can win. As ntpd
// and chrony do, each server gets one vote (its own best sample), every vote is a correctness
// interval [offset − distance, offset + distance], and only servers whose intervals share one
// point with a strict majority of the answering servers count (Marzullo's intersection). The rest
// are falsetickers. Pure functions of their inputs; the monitor feeds them one round's samples.

/// One round's verdict over the servers that answered.
public struct ClockSelection: Sendable, Equatable {
    /// The best sample of each server that answered, in the order the servers first answered.
    public var sources: [ClockMeasurement]
    /// The servers in the majority's intersection (empty when there is no majority).
    public var truechimers: [ClockMeasurement]
    /// The servers outside it (empty when there is no majority to be outside of).
    public var falsetickers: [ClockMeasurement]
    /// The truechimer to go by (the shortest round trip among them): nil unless at least
    /// `minimumSources` servers agree and they are a strict majority of those that answered.
    public var agreed: ClockMeasurement?

    public init(sources: [ClockMeasurement], truechimers: [ClockMeasurement] = [],
                falsetickers: [ClockMeasurement] = [], agreed: ClockMeasurement? = nil) {
        self.sources = sources
        self.truechimers = truechimers
        self.falsetickers = falsetickers
        self.agreed = agreed
    }

    /// Half the width of a server's correctness interval: half its round trip (the offset's
    /// error bound) plus half the agreement tolerance, so two servers with short round trips
    /// agree when their offsets differ by at most ClockPolicy.agreementSeconds.
    public static func distance(_ m: ClockMeasurement) -> Double {
        m.delaySeconds / 2 + ClockPolicy.agreementSeconds / 2
    }

    /// Per-server best samples, then the majority's intersection.
    static func select(_ samples: [NTPSample], minimumSources: Int) -> ClockSelection {
        select(sources: bestPerServer(samples), minimumSources: minimumSources)
    }

    /// A server's sample with the shortest round trip is its least disturbed one (the clock
    /// filter of ntpd and chrony). One vote per configured server name, whatever addresses it
    /// resolves to: a spoofed DNS answer with many addresses must not buy many votes.
    static func bestPerServer(_ samples: [NTPSample]) -> [ClockMeasurement] {
        var best: [ClockMeasurement] = []
        for sample in samples {
            let m = ClockMeasurement(sample)
            if let i = best.firstIndex(where: { $0.server == m.server }) {
                if m.delaySeconds < best[i].delaySeconds { best[i] = m }
            } else {
                best.append(m)
            }
        }
        return best
    }

    public static func select(sources: [ClockMeasurement], minimumSources: Int) -> ClockSelection {
        var selection = ClockSelection(sources: sources)
        // One server alone can only be diagnosed; there is nobody to agree or disagree with.
        guard sources.count >= 2,
              let members = majorityIntersection(sources.map { ($0.offsetSeconds - distance($0), $0.offsetSeconds + distance($0)) })
        else { return selection }
        selection.truechimers = members.map { sources[$0] }
        selection.falsetickers = sources.indices.filter { !members.contains($0) }.map { sources[$0] }
        if members.count >= max(minimumSources, 2) {
            selection.agreed = selection.truechimers.min { $0.delaySeconds < $1.delaySeconds }
        }
        return selection
    }

    /// Marzullo's algorithm: the indices of the intervals that contain the deepest point, when
    /// they are a strict majority of all intervals and that point is unambiguous; else nil.
    /// Ambiguous: two separate regions are equally deep (possible when some intervals are wide),
    /// so the majority could be either group; then nobody is trusted.
    static func majorityIntersection(_ intervals: [(low: Double, high: Double)]) -> [Int]? {
        guard !intervals.isEmpty, intervals.allSatisfy({ $0.low.isFinite && $0.high.isFinite && $0.low <= $0.high })
        else { return nil }
        // Closed intervals: at one value, starts come before ends, so touching intervals overlap.
        var edges: [(value: Double, isStart: Bool)] = []
        for interval in intervals {
            edges.append((interval.low, true))
            edges.append((interval.high, false))
        }
        edges.sort { $0.value != $1.value ? $0.value < $1.value : ($0.isStart && !$1.isStart) }
        var depth = 0, deepest = 0, deepestRegions = 0
        var point = 0.0
        for edge in edges {
            if edge.isStart {
                depth += 1
                if depth > deepest {
                    deepest = depth
                    deepestRegions = 1
                    point = edge.value
                } else if depth == deepest {
                    deepestRegions += 1
                }
            } else {
                depth -= 1
            }
        }
        guard deepestRegions == 1, 2 * deepest > intervals.count else { return nil }
        return intervals.indices.filter { intervals[$0].low <= point && point <= intervals[$0].high }
    }
}
