import Foundation

/// The part of JSON Schema (2020-12) that docs/trace.schema.json uses, written here so the test
/// needs no package: type, const, enum, pattern, minLength, minimum, required, properties,
/// additionalProperties (false or a schema), dependentRequired, items, minItems, maxItems,
/// allOf, not, if/then/else and local `$ref`s (`#/$defs/name`). A keyword it does not know is
/// an error, so the schema cannot silently say more than this checks.
struct JSONSchemaValidator {
    let root: [String: Any]

    init(schemaAt path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Failure("schema \(path) is not an object")
        }
        root = object
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ text: String) { description = text }
    }

    static let known: Set<String> = [
        "$schema", "$id", "title", "description", "$defs", "$ref", "type", "const", "enum", "pattern", "minLength",
        "minimum", "required", "properties", "additionalProperties", "dependentRequired", "items", "minItems",
        "maxItems", "allOf", "not", "if", "then", "else",
    ]

    /// The problems of `value` against the schema; empty when it is valid.
    func problems(_ value: Any) throws -> [String] {
        var found: [String] = []
        try check(value, against: root, at: "$", into: &found)
        return found
    }

    private func check(_ value: Any, against schema: [String: Any], at path: String, into found: inout [String]) throws {
        if let unknown = schema.keys.first(where: { !Self.known.contains($0) }) {
            throw Failure("schema keyword \(unknown) at \(path) is not supported by the test's validator")
        }
        if let ref = schema["$ref"] as? String {
            try check(value, against: resolve(ref), at: path, into: &found)
        }
        if let type = schema["type"] as? String, !Self.has(value, type: type) {
            found.append("\(path): \(Self.show(value)) is not of type \(type)")
            return
        }
        if let constant = schema["const"], !Self.equal(value, constant) {
            found.append("\(path): \(Self.show(value)) is not \(Self.show(constant))")
        }
        if let options = schema["enum"] as? [Any], !options.contains(where: { Self.equal(value, $0) }) {
            found.append("\(path): \(Self.show(value)) is not one of \(options.map(Self.show))")
        }
        if let text = value as? String { checkString(text, schema, path, &found) }
        if let number = value as? NSNumber, !Self.isBool(number), let minimum = schema["minimum"] as? NSNumber,
           number.doubleValue < minimum.doubleValue {
            found.append("\(path): \(number) is below \(minimum)")
        }
        if let object = value as? [String: Any] { try checkObject(object, schema, path, &found) }
        if let array = value as? [Any] { try checkArray(array, schema, path, &found) }
        for (index, part) in (schema["allOf"] as? [[String: Any]] ?? []).enumerated() {
            try check(value, against: part, at: path + "(allOf \(index))", into: &found)
        }
        if let negated = schema["not"] as? [String: Any], try matches(value, negated) {
            found.append("\(path): must not match \(Self.show(negated))")
        }
        if let condition = schema["if"] as? [String: Any] {
            let branch = try matches(value, condition) ? schema["then"] : schema["else"]
            if let branch = branch as? [String: Any] { try check(value, against: branch, at: path, into: &found) }
        }
    }

    private func checkString(_ text: String, _ schema: [String: Any], _ path: String, _ found: inout [String]) {
        if let minLength = schema["minLength"] as? Int, text.count < minLength {
            found.append("\(path): \"\(text)\" is shorter than \(minLength)")
        }
        if let pattern = schema["pattern"] as? String {
            let regex = try? NSRegularExpression(pattern: pattern)
            let range = NSRange(text.startIndex..., in: text)
            if regex?.firstMatch(in: text, range: range) == nil { found.append("\(path): \"\(text)\" does not match \(pattern)") }
        }
    }

    private func checkObject(_ object: [String: Any], _ schema: [String: Any], _ path: String, _ found: inout [String]) throws {
        for key in schema["required"] as? [String] ?? [] where object[key] == nil {
            found.append("\(path): missing \(key)")
        }
        let properties = schema["properties"] as? [String: [String: Any]] ?? [:]
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            if let property = properties[key] {
                try check(value, against: property, at: "\(path).\(key)", into: &found)
            } else if let additional = schema["additionalProperties"] as? [String: Any] {
                try check(value, against: additional, at: "\(path).\(key)", into: &found)
            } else if let allowed = schema["additionalProperties"] as? Bool, !allowed {
                found.append("\(path): unexpected key \(key)")
            }
        }
        for (key, needed) in schema["dependentRequired"] as? [String: [String]] ?? [:] where object[key] != nil {
            for other in needed where object[other] == nil { found.append("\(path): \(key) without \(other)") }
        }
    }

    private func checkArray(_ array: [Any], _ schema: [String: Any], _ path: String, _ found: inout [String]) throws {
        if let minimum = schema["minItems"] as? Int, array.count < minimum { found.append("\(path): fewer than \(minimum) items") }
        if let maximum = schema["maxItems"] as? Int, array.count > maximum { found.append("\(path): more than \(maximum) items") }
        if let items = schema["items"] as? [String: Any] {
            for (index, item) in array.enumerated() { try check(item, against: items, at: "\(path)[\(index)]", into: &found) }
        }
    }

    private func matches(_ value: Any, _ schema: [String: Any]) throws -> Bool {
        var found: [String] = []
        try check(value, against: schema, at: "", into: &found)
        return found.isEmpty
    }

    private func resolve(_ ref: String) throws -> [String: Any] {
        let prefix = "#/$defs/"
        guard ref.hasPrefix(prefix), let defs = root["$defs"] as? [String: Any],
              let target = defs[String(ref.dropFirst(prefix.count))] as? [String: Any]
        else { throw Failure("unresolvable $ref \(ref)") }
        return target
    }

    // JSONSerialization gives NSNumber for numbers and booleans alike (and `is Bool` is true for
    // 0 and 1): a boolean is the one stored as a C char, which no parsed number is.
    private static func isBool(_ number: NSNumber) -> Bool { String(cString: number.objCType) == "c" }

    private static func has(_ value: Any, type: String) -> Bool {
        switch type {
        case "object": return value is [String: Any]
        case "array": return value is [Any]
        case "string": return value is String
        case "boolean": return (value as? NSNumber).map(isBool) ?? false
        case "integer":
            guard let number = value as? NSNumber, !isBool(number) else { return false }
            return number.doubleValue == number.doubleValue.rounded()
        case "number": return (value as? NSNumber).map { !isBool($0) } ?? false
        case "null": return value is NSNull
        default: return false
        }
    }

    private static func equal(_ a: Any, _ b: Any) -> Bool {
        switch (a, b) {
        case let (x as String, y as String): return x == y
        case let (x as NSNumber, y as NSNumber): return isBool(x) == isBool(y) && x == y
        default: return false
        }
    }

    private static func show(_ value: Any) -> String {
        if let text = value as? String { return "\"\(text)\"" }
        if value is NSNull { return "null" }
        if let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) {
            return String(decoding: data, as: UTF8.self)
        }
        return "\(value)"
    }
}
