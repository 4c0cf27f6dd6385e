// libpam's dispatch loop (pam_dispatch.c, _pam_dispatch_aux) run over every answer each module
// can give: the impression (undecided, positive, negative) and status, `ok`/`done`/`bad`/`die`/
// `reset`/jumps, substacks that count as one rule for a jump and keep done/die to themselves, and
// the final sanity check (success only with a positive impression). Each run is one Path.

public struct PathStep: Sendable {
    public var rule: PamRule
    public var answer: ModuleAnswer
    public var action: PamAction
}

public struct PamPath: Sendable {
    public var steps: [PathStep]
    public var result: PamResult
    public var succeeded: Bool
    public var token: Token

    public var askedCode: Bool { steps.contains { $0.answer.askedCode } }
    public var twoFactorSteps: [PathStep] { steps.filter { $0.rule.isTwoFactor } }
    public func step(for rule: PamRule) -> PathStep? { steps.first { $0.rule.location == rule.location } }
}

enum Impression { case undecided, positive, negative }

public enum PamDispatch {
    /// More paths than any real stack has; beyond it the rest is not explored (and said so).
    static let maxPaths = 20_000

    public static func paths(_ stack: PamStack, person: Person, caller: Caller) -> [PamPath] {
        var out: [PamPath] = []
        let start = State(index: 0, previousLevel: 0, impression: .undecided, status: .permDenied,
                          saved: [:], token: .none, steps: [])
        walk(stack.handlers, start, person, caller, &out)
        return out
    }

    struct State {
        var index: Int
        var previousLevel: Int
        var impression: Impression
        /// libpam starts with PAM_MUST_FAIL_CODE (PAM_PERM_DENIED).
        var status: PamResult
        var saved: [Int: (Impression, PamResult)]
        var token: Token
        var steps: [PathStep]
    }

    static func walk(_ handlers: [(handler: PamHandler, level: Int)], _ initial: State, _ person: Person,
                     _ caller: Caller, _ out: inout [PamPath]) {
        var state = initial
        while state.index < handlers.count {
            let (handler, level) = handlers[state.index]
            if state.previousLevel < level { state.saved[level] = (state.impression, state.status) }
            let rule: PamRule
            let answers: [ModuleAnswer]
            switch handler {
            case .substack:
                state.previousLevel = level
                state.index += 1
                continue
            case .fault(let why, let location):
                rule = PamRule(type: "auth", control: PamControl.keyword("required")!, module: "(\(why))",
                               arguments: [], location: location)
                answers = [ModuleAnswer(result: .permDenied, token: state.token, behaviour: .denies)]
                // A fault entry always counts as failed (libpam: PAM_MUST_FAIL_CODE, action bad).
            case .module(let module):
                rule = module
                answers = ModuleCatalog.answers(module, person: person, caller: caller, token: state.token)
            }
            // Every answer but the last is explored on a copy.
            for answer in answers.dropLast() {
                guard out.count < maxPaths else { return }
                var branch = state
                apply(answer, rule: rule, isFault: isFault(handler), level: level, handlers: handlers, &branch)
                walk(handlers, branch, person, caller, &out)
            }
            apply(answers[answers.count - 1], rule: rule, isFault: isFault(handler), level: level, handlers: handlers, &state)
        }
        finish(state, &out)
    }

    static func isFault(_ handler: PamHandler) -> Bool {
        if case .fault = handler { return true }
        return false
    }

    static func finish(_ state: State, _ out: inout [PamPath]) {
        // libpam's sanity check: success needs a positive impression.
        let succeeded = state.status == .success && state.impression == .positive
        out.append(PamPath(steps: state.steps, result: succeeded ? .success : (state.status == .success ? .permDenied : state.status),
                           succeeded: succeeded, token: state.token))
    }

    /// Applies one module's answer and moves to the next rule to run (past the end: finished).
    static func apply(_ answer: ModuleAnswer, rule: PamRule, isFault: Bool, level: Int,
                      handlers: [(handler: PamHandler, level: Int)], _ state: inout State) {
        let result = answer.result
        let action: PamAction = isFault ? .bad : rule.control.action(for: result)
        state.token = answer.token
        state.steps.append(PathStep(rule: rule, answer: answer, action: action))
        var decided = false
        switch action {
        case .reset:
            (state.impression, state.status) = state.saved[level] ?? (.undecided, .permDenied)
        case .ok, .done:
            if state.impression == .undecided || (state.impression == .positive && state.status == .success) {
                state.impression = .positive
                state.status = result
            }
            if state.impression != .negative && action == .done { decided = true }
        case .bad, .die:
            if state.impression != .negative {
                state.impression = .negative
                state.status = result == .success ? .permDenied : result
            }
            if action == .die { decided = true }
        case .ignore:
            break
        case .jump(var count):
            // Skip `count` rules of this level; a substack (with everything below it) is one.
            var index = state.index
            while index + 1 < handlers.count, handlers[index + 1].level >= level, count > 0 {
                repeat { index += 1 } while index + 1 < handlers.count && handlers[index + 1].level > level
                count -= 1
            }
            state.index = index
        }
        if decided {
            // The rest of this level (and below) is skipped; a substack's parent carries on.
            var index = state.index
            while index + 1 < handlers.count, handlers[index + 1].level >= level { index += 1 }
            state.index = index
        }
        state.previousLevel = level
        state.index += 1
    }
}
